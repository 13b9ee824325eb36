// Package proxyrelay is privlink's one userspace hop on a data path: a TCP
// relay that a private link service with enableProxyProtocol needs, since
// inserting a PROXY protocol v2 header is layer 7 work the kernel's NAT
// cannot do. Every other byte of privlink's data path stays in the kernel
// (see DESIGN.md).
//
// A Relay serves a set of Routes. Each route listens on an address inside a
// network namespace; for every connection it accepts it connects to the
// route's upstream from another (or the same) namespace and source address,
// writes the PROXY v2 header (the consumer's source, the destination it
// dialled, and Azure's LinkID TLV), then moves bytes both ways with splice(2)
// (io.Copy between two *net.TCPConn, chunked so that counters move while a
// session lives), so that no payload byte is copied through user memory.
// Half-closes pass through; a route that goes (Set without it, or Close)
// closes its listener and resets its live sessions on both sides at once.
//
// Every connection a route accepts is told once, when it ends, to the
// function given to Observe (the connection audit), as a fabric.FlowEvent
// like those the kernel's conntrack gives for the data path's translations.
package proxyrelay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/policy"
)

// Route is one relayed address: what the data path asks a Relay to serve.
type Route struct {
	// Name identifies the route across Set calls (for example the private
	// endpoint connection it serves), and names its counters and log lines.
	Name string
	// ListenNamespace is the namespace whose Listen address the relay
	// listens on ("" is the process's own namespace: tests on loopback).
	ListenNamespace string
	// Listen is the address and port to listen on; the kernel's DNAT of the
	// endpoint's address leads here.
	Listen netip.AddrPort
	// DialNamespace is the namespace the relay connects to Upstream from.
	DialNamespace string
	// Source, when valid, is the address the upstream connection is bound
	// to (the service's NAT IP); it need not be local (IP_FREEBIND), but
	// replies to it must come back to DialNamespace.
	Source netip.Addr
	// Upstream is where connections go: the load balancer's frontend.
	Upstream netip.AddrPort
	// ProxyProtocol says whether each upstream connection starts with a
	// PROXY protocol v2 header.
	ProxyProtocol bool
	// LinkID is the private endpoint's linkIdentifier, sent in the header's
	// PP2_TYPE_AZURE TLV.
	LinkID uint32
	// Epoch tells which instance of ListenNamespace the route listens in
	// (the caller passes its inode): a namespace deleted and made again
	// under the same name changes it, so the route is a changed one and
	// listens in the new namespace.
	Epoch uint64
}

// Counters are a route's totals since it was set (or last changed).
type Counters struct {
	// Accepted counts connections accepted; Active those alive now.
	Accepted uint64
	Active   int64
	// Failed counts connections closed because the upstream could not be
	// reached or the header not written; Refused those over MaxSessions.
	Failed  uint64
	Refused uint64
	// BytesUp is payload from consumers to the upstream, BytesDown the
	// reverse; headers are not counted. They grow in steps of at most
	// copyChunk while a session lives.
	BytesUp   uint64
	BytesDown uint64
}

// Options tune a Relay; the zero value is usable.
type Options struct {
	// MaxSessions bounds each route's live sessions (default 4096): each
	// costs two goroutines and two kernel pipes, so this bounds memory.
	// Connections beyond it are reset at once and counted as Refused.
	MaxSessions int
	// DialTimeout bounds connecting to an upstream (default 10 s).
	DialTimeout time.Duration
}

// copyChunk is how much one splice loop moves before the counters are
// updated; it costs one function call per chunk, not a syscall.
const copyChunk = 256 << 10

// ErrClosed is returned by Set after Close.
var ErrClosed = errors.New("proxyrelay: relay closed")

// Relay serves Routes. Its methods are safe for concurrent use.
type Relay struct {
	fab  *fabric.Fabric
	log  *slog.Logger
	opts Options
	stop func() bool

	mu     sync.Mutex
	closed bool
	routes map[string]*route

	observe atomic.Pointer[func(route string, ev fabric.FlowEvent)]
}

// Observe makes the relay call fn once for every connection a route
// accepted, when the connection has ended (nil stops it). fn gets the
// route's name and a FlowEnded event: Flow.Client is the consumer's
// address, Target the address it dialled, Service the route's upstream,
// Source the relay's side of the upstream connection (the NAT IP and a
// port; invalid when no upstream connection was made); BytesIn and
// BytesOut are payload bytes up and down (headers not counted; no packet
// counts, the relay sees none). End is FlowClosed when both sides closed,
// FlowRevoked when the route went (Set without it, or Close), FlowReset
// otherwise: a side reset, the upstream could not be reached, or the route
// was full. fn runs on the session's goroutine, so it must not block for
// long; connections that ended before Observe are not told.
func (r *Relay) Observe(fn func(route string, ev fabric.FlowEvent)) {
	if fn == nil {
		r.observe.Store(nil)
		return
	}
	r.observe.Store(&fn)
}

// New returns a Relay that opens its sockets through fab (nil when every
// route uses the process's own namespace). It closes when ctx is done.
func New(ctx context.Context, fab *fabric.Fabric, log *slog.Logger, opts Options) *Relay {
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 4096
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{fab: fab, log: log, opts: opts, routes: map[string]*route{}}
	r.stop = context.AfterFunc(ctx, func() { r.Close() })
	return r
}

// Set makes the relay serve exactly routes. It is idempotent: a route equal
// to one already served is left alone with its sessions and counters; a
// route that is gone or changed closes its listener and resets its live
// sessions (a changed one then starts afresh). Invalid input changes
// nothing; a listener that cannot be opened fails only its route (reported
// in the error, retried by the next Set).
func (r *Relay) Set(routes []Route) error {
	want := make(map[string]Route, len(routes))
	for i, rt := range routes {
		if err := r.check(rt); err != nil {
			return fmt.Errorf("proxyrelay: routes[%d]: %w", i, err)
		}
		if _, dup := want[rt.Name]; dup {
			return fmt.Errorf("proxyrelay: routes[%d]: name %q is used twice", i, rt.Name)
		}
		want[rt.Name] = rt
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	// Stop what goes first, so a changed route can bind its address again.
	for name, old := range r.routes {
		if w, ok := want[name]; !ok || w != old.spec {
			old.close()
			delete(r.routes, name)
		}
	}
	names := make([]string, 0, len(want))
	for name := range want {
		if _, ok := r.routes[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		rt, err := r.start(want[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.routes[name] = rt
	}
	return errors.Join(errs...)
}

func (r *Relay) check(rt Route) error {
	switch {
	case rt.Name == "":
		return errors.New("name is empty")
	case !rt.Listen.IsValid() || rt.Listen.Port() == 0:
		return fmt.Errorf("route %q: listen address %s: want an IP address and a port other than 0", rt.Name, rt.Listen)
	case !rt.Upstream.IsValid() || rt.Upstream.Port() == 0:
		return fmt.Errorf("route %q: upstream %s: want an IP address and a port other than 0", rt.Name, rt.Upstream)
	case rt.Source.IsValid() && rt.Source.Unmap().Is4() != rt.Upstream.Addr().Unmap().Is4():
		return fmt.Errorf("route %q: source %s and upstream %s: want one address family", rt.Name, rt.Source, rt.Upstream)
	case r.fab == nil && (rt.ListenNamespace != "" || rt.DialNamespace != ""):
		return fmt.Errorf("route %q: namespaces %q and %q: this relay has no fabric, so only the process's own namespace (\"\")", rt.Name, rt.ListenNamespace, rt.DialNamespace)
	}
	return nil
}

// Counters returns each served route's counters by name.
func (r *Relay) Counters() map[string]Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Counters, len(r.routes))
	for name, rt := range r.routes {
		out[name] = rt.counters()
	}
	return out
}

// Routes returns the routes served, sorted by name.
func (r *Relay) Routes() []Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Route, 0, len(r.routes))
	for _, rt := range r.routes {
		out = append(out, rt.spec)
	}
	slices.SortFunc(out, func(a, b Route) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Close stops every route: listeners close and live sessions are reset on
// both sides. It returns when every session has ended. Set fails afterwards.
func (r *Relay) Close() error {
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for name, rt := range r.routes {
		rt.close()
		delete(r.routes, name)
	}
	return nil
}

// route is a served Route: its listener, live sessions and counters.
type route struct {
	relay  *Relay
	spec   Route
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup // the accept loop and every session

	mu       sync.Mutex
	sessions map[*session]struct{}

	accepted, failed, refused, up, down atomic.Uint64
	active                              atomic.Int64
}

func (r *Relay) start(spec Route) (*route, error) {
	addr := spec.Listen.String()
	var ln net.Listener
	var err error
	if spec.ListenNamespace == "" {
		ln, err = net.Listen("tcp", addr)
	} else {
		ln, err = r.fab.ListenTCP(spec.ListenNamespace, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("proxyrelay: route %q: listen on %s in namespace %q: %w", spec.Name, addr, spec.ListenNamespace, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt := &route{relay: r, spec: spec, ln: ln, ctx: ctx, cancel: cancel, sessions: map[*session]struct{}{}}
	rt.done.Add(1)
	go rt.accept()
	r.log.Info("relay route up", "route", spec.Name, "listen", addr, "listen_ns", spec.ListenNamespace,
		"upstream", spec.Upstream, "dial_ns", spec.DialNamespace, "source", spec.Source,
		"proxy_protocol", spec.ProxyProtocol, "link_id", spec.LinkID)
	return rt, nil
}

// close ends the route: no new connections, every live session reset, and
// returns once all its goroutines have ended.
func (rt *route) close() {
	rt.cancel()
	rt.ln.Close()
	rt.mu.Lock()
	n := len(rt.sessions)
	for s := range rt.sessions {
		s.reset()
	}
	rt.mu.Unlock()
	rt.done.Wait()
	rt.relay.log.Info("relay route down", "route", rt.spec.Name, "sessions_reset", n)
}

func (rt *route) counters() Counters {
	return Counters{
		Accepted: rt.accepted.Load(), Active: rt.active.Load(),
		Failed: rt.failed.Load(), Refused: rt.refused.Load(),
		BytesUp: rt.up.Load(), BytesDown: rt.down.Load(),
	}
}

func (rt *route) accept() {
	defer rt.done.Done()
	for {
		c, err := rt.ln.Accept()
		if err != nil {
			if rt.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: wait a little, then go on.
			rt.relay.log.Warn("relay accept failed", "route", rt.spec.Name, "err", err)
			select {
			case <-rt.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		rt.accepted.Add(1)
		s := &session{client: c.(*net.TCPConn), start: time.Now()}
		s.src, s.dst = s.addrs()
		if !rt.add(s) {
			s.reset()
			rt.ended(s, fabric.FlowReset)
			continue
		}
		rt.done.Add(1)
		go rt.serve(s)
	}
}

// add registers s, unless the route is closing or full.
func (rt *route) add(s *session) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.ctx.Err() != nil {
		return false
	}
	if len(rt.sessions) >= rt.relay.opts.MaxSessions {
		rt.refused.Add(1)
		rt.relay.log.Warn("relay session refused: route is full", "route", rt.spec.Name, "max_sessions", rt.relay.opts.MaxSessions)
		return false
	}
	rt.sessions[s] = struct{}{}
	rt.active.Add(1)
	return true
}

func (rt *route) remove(s *session) {
	rt.mu.Lock()
	delete(rt.sessions, s)
	rt.mu.Unlock()
	rt.active.Add(-1)
}

// session is one relayed connection.
type session struct {
	client *net.TCPConn
	start  time.Time
	// src is the consumer's address, dst the one it dialled.
	src, dst netip.AddrPort
	// up and down are the payload bytes moved each way; only serve's
	// goroutines write them, before ended reads them.
	up, down uint64

	mu       sync.Mutex
	upstream *net.TCPConn
	isReset  bool
}

// setUpstream records up, or resets it when the session was reset while
// dialling.
func (s *session) setUpstream(up *net.TCPConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isReset {
		abort(up)
		return false
	}
	s.upstream = up
	return true
}

// reset closes both sides with RST, ending the session's copies at once.
func (s *session) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.isReset = true
	abort(s.client)
	if s.upstream != nil {
		abort(s.upstream)
	}
}

func abort(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// ended tells the observer, if any, that s ended (end, or FlowRevoked when
// the route is going).
func (rt *route) ended(s *session, end fabric.FlowEnd) {
	fn := rt.relay.observe.Load()
	if fn == nil {
		return
	}
	if rt.ctx.Err() != nil {
		end = fabric.FlowRevoked
	}
	ev := fabric.FlowEvent{Type: fabric.FlowEnded,
		Flow:  fabric.Flow{Client: s.src, Target: s.dst, Service: rt.spec.Upstream, Protocol: policy.TCP},
		Start: s.start, Stop: time.Now(), End: end, BytesIn: s.up, BytesOut: s.down}
	s.mu.Lock()
	if s.upstream != nil {
		if a, ok := s.upstream.LocalAddr().(*net.TCPAddr); ok {
			ev.Flow.Source = a.AddrPort()
		}
	}
	s.mu.Unlock()
	(*fn)(rt.spec.Name, ev)
}

// addrs are the consumer's address and the one it dialled (the original
// destination when a DNAT led the connection to the listener).
func (s *session) addrs() (src, dst netip.AddrPort) {
	if a, ok := s.client.RemoteAddr().(*net.TCPAddr); ok {
		src = a.AddrPort()
	}
	dst, natted, err := fabric.OriginalDestination(s.client)
	if err != nil || !natted {
		if a, ok := s.client.LocalAddr().(*net.TCPAddr); ok {
			dst = a.AddrPort()
		}
	}
	return src, dst
}

func (rt *route) serve(s *session) {
	defer rt.done.Done()
	defer rt.remove(s)
	end := fabric.FlowReset
	defer func() { rt.ended(s, end) }()
	spec := rt.spec
	log := rt.relay.log
	src, dst := s.src, s.dst
	ctx, cancel := context.WithTimeout(rt.ctx, rt.relay.opts.DialTimeout)
	up, err := rt.relay.fab.DialTCPFrom(ctx, spec.DialNamespace, spec.Source, spec.Upstream)
	cancel()
	if err != nil && rt.ctx.Err() != nil {
		s.reset() // the route went while dialling: not a failure
		return
	}
	if err != nil {
		rt.failed.Add(1)
		log.Warn("relay upstream unreachable", "route", spec.Name, "consumer", src, "upstream", spec.Upstream, "err", err)
		s.reset()
		return
	}
	if !s.setUpstream(up) {
		return
	}
	if spec.ProxyProtocol {
		var buf [maxHeaderLen]byte
		hdr, err := AppendHeader(buf[:0], src, dst, spec.LinkID)
		if err == nil {
			_, err = up.Write(hdr)
		}
		if err != nil {
			rt.failed.Add(1)
			log.Warn("relay header not written", "route", spec.Name, "consumer", src, "err", err)
			s.reset()
			return
		}
	}
	log.Debug("relay session", "route", spec.Name, "consumer", src, "dialled", dst, "upstream", spec.Upstream)

	// Either side failing (a reset, or the route closing) ends both at
	// once; clean ends (EOF both ways) close both after the half-closes.
	errc := make(chan error, 1)
	go func() {
		var err error
		s.up, err = pump(up, s.client, &rt.up)
		if err != nil {
			s.reset()
		}
		errc <- err
	}()
	var errDown error
	s.down, errDown = pump(s.client, up, &rt.down)
	if errDown != nil {
		s.reset()
	}
	if err := errors.Join(errDown, <-errc); err != nil {
		if rt.ctx.Err() == nil {
			log.Debug("relay session ended by error", "route", spec.Name, "consumer", src, "err", err)
		}
		return
	}
	s.client.Close()
	up.Close()
	end = fabric.FlowClosed
}

// pump moves bytes from src to dst until src's end, then half-closes dst;
// it returns how many it moved, which it also adds to n as it goes.
// Between two *net.TCPConn, io.CopyN ends in dst.ReadFrom, which splices
// (net's splice_linux.go handles an *io.LimitedReader of a *TCPConn).
func pump(dst, src *net.TCPConn, n *atomic.Uint64) (uint64, error) {
	var total uint64
	for {
		w, err := io.CopyN(dst, src, copyChunk)
		n.Add(uint64(w))
		total += uint64(w)
		switch {
		case errors.Is(err, io.EOF):
			return total, dst.CloseWrite()
		case err != nil:
			return total, err
		}
	}
}
