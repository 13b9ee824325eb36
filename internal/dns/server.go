package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// MaxUDPSize is the largest UDP response the server sends and the payload
// size it advertises in EDNS(0): 1232 bytes, which fits any path MTU of
// 1280 or more without fragmentation (DNS Flag Day 2020).
const MaxUDPSize = 1232

// udpReadSize is the buffer for one incoming UDP query.
const udpReadSize = 4096

// tcpWriteTimeout bounds each TCP write. miekg/dns sets no write deadline,
// so without it a client that stops reading could hold a handler, and the
// shutdown of its view, forever.
const tcpWriteTimeout = 2 * time.Second

// Server answers DNS queries for views of a Catalog on sockets the caller
// opens. One Server serves any number of views at once. Serve never
// forwards a query; ServeForwarding (a simulated site's DNS) does, for the
// zones it is given.
type Server struct {
	cat *Catalog
	log *slog.Logger

	mu    sync.Mutex
	stats map[string]*counters // by view; kept when a view stops serving

	tcpWriteTimeout time.Duration // tests shorten it
}

// NewServer returns a server answering from cat. log receives errors and,
// at debug level, the start and end of each view; nil discards them.
func NewServer(cat *Catalog, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cat: cat, log: log, stats: map[string]*counters{}, tcpWriteTimeout: tcpWriteTimeout}
}

// Serve answers queries in view on pc (UDP) and ln (TCP) until ctx ends,
// then shuts down and returns nil once every query in progress has been
// answered and no goroutine of it is left. Either socket may be nil, not
// both. Serve takes ownership of both sockets and closes them when it
// returns. If a socket fails, Serve stops the other and returns the error.
func (s *Server) Serve(ctx context.Context, view string, pc net.PacketConn, ln net.Listener) error {
	return s.serve(ctx, view, nil, pc, ln)
}

func (s *Server) serve(ctx context.Context, view string, fw *Forwarding, pc net.PacketConn, ln net.Listener) error {
	if pc == nil && ln == nil {
		return fmt.Errorf("dns: serve view %q: no socket", view)
	}
	log := s.log.With("view", view)
	st := s.counters(view)

	type run struct {
		proto   string
		srv     *mdns.Server
		started chan struct{}
		done    chan struct{}
		err     error
	}
	var runs []*run
	add := func(proto string, srv *mdns.Server) {
		r := &run{proto: proto, srv: srv, started: make(chan struct{}), done: make(chan struct{})}
		srv.NotifyStartedFunc = func() { close(r.started) }
		srv.MsgAcceptFunc = st.accept
		srv.MsgInvalidFunc = st.invalid
		runs = append(runs, r)
	}
	if pc != nil {
		add("udp", &mdns.Server{PacketConn: pc, UDPSize: udpReadSize,
			Handler: &handler{cat: s.cat, log: log, view: view, stats: st, fw: fw}})
	}
	if ln != nil {
		add("tcp", &mdns.Server{Listener: deadlineListener{ln, s.tcpWriteTimeout},
			Handler: &handler{cat: s.cat, log: log, view: view, stats: st, tcp: true, fw: fw}})
	}

	stopped := make(chan struct{}, len(runs))
	for _, r := range runs {
		go func() {
			r.err = r.srv.ActivateAndServe()
			close(r.done)
			stopped <- struct{}{}
		}()
	}
	log.Debug("serving dns")
	select {
	case <-ctx.Done():
	case <-stopped:
	}

	// Shut down whatever still runs. A server can only be shut down once
	// it has started; one that returned on its own needs nothing. After a
	// shutdown the server returns nil, so any error is a socket failure.
	var errs []error
	for _, r := range runs {
		select {
		case <-r.done:
		case <-r.started:
			// Returns once in-flight handlers are done (a TCP write
			// waits at most tcpWriteTimeout) and idle reads are
			// unblocked.
			if err := r.srv.ShutdownContext(context.Background()); err != nil {
				errs = append(errs, fmt.Errorf("dns: view %q: shut down %s: %w", view, r.proto, err))
			}
		}
		<-r.done
		if r.err != nil {
			errs = append(errs, fmt.Errorf("dns: view %q: serve %s: %w", view, r.proto, r.err))
		}
	}
	// A server that failed before starting never closed its socket.
	if pc != nil {
		_ = pc.Close()
	}
	if ln != nil {
		_ = ln.Close()
	}
	err := errors.Join(errs...)
	if err != nil {
		log.Error("dns stopped", "err", err)
	} else {
		log.Debug("dns stopped")
	}
	return err
}

// Stats returns the counters of view (zero if it was never served).
func (s *Server) Stats(view string) Stats {
	s.mu.Lock()
	c := s.stats[view]
	s.mu.Unlock()
	if c == nil {
		return Stats{Responses: map[string]uint64{}}
	}
	return c.snapshot()
}

// AllStats returns the counters of every view served so far.
func (s *Server) AllStats() map[string]Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Stats, len(s.stats))
	for v, c := range s.stats {
		out[v] = c.snapshot()
	}
	return out
}

// ForgetStats drops the counters of view, e.g. when its network is
// deleted. Counting starts from zero if the view is served again.
func (s *Server) ForgetStats(view string) {
	s.mu.Lock()
	delete(s.stats, view)
	s.mu.Unlock()
}

func (s *Server) counters(view string) *counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.stats[view]
	if c == nil {
		c = &counters{}
		s.stats[view] = c
	}
	return c
}

// Stats are the counters of one view since it was first served.
type Stats struct {
	// Queries counts requests received (messages with a readable header
	// that are not responses).
	Queries uint64
	// Responses counts responses, by rcode name ("NOERROR", "NXDOMAIN",
	// "SERVFAIL", "REFUSED", "FORMERR", ...). A response is counted just
	// before it is sent, so a client that has it finds it counted.
	Responses map[string]uint64
	// Truncated counts UDP responses sent with the TC bit.
	Truncated uint64
	// Malformed counts messages that could not be parsed (answered with
	// FORMERR when the header was readable, dropped otherwise).
	Malformed uint64
}

// maxRcode bounds the rcodes counted one by one; larger ones count as
// maxRcode.
const maxRcode = 23

type counters struct {
	queries, truncated, malformed atomic.Uint64
	rcodes                        [maxRcode + 1]atomic.Uint64
}

func (c *counters) response(rcode int) {
	c.rcodes[min(max(rcode, 0), maxRcode)].Add(1)
}

func (c *counters) snapshot() Stats {
	st := Stats{
		Queries:   c.queries.Load(),
		Truncated: c.truncated.Load(),
		Malformed: c.malformed.Load(),
		Responses: map[string]uint64{},
	}
	for rc := range c.rcodes {
		if n := c.rcodes[rc].Load(); n > 0 {
			name, ok := mdns.RcodeToString[rc]
			if !ok {
				name = fmt.Sprintf("RCODE%d", rc)
			}
			st.Responses[name] += n
		}
	}
	return st
}

// accept counts requests and lets every request through to the handler,
// which answers what it does not serve (other opcodes, several questions)
// itself. Responses are dropped.
func (c *counters) accept(dh mdns.Header) mdns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return mdns.MsgIgnore
	}
	c.queries.Add(1)
	return mdns.MsgAccept
}

// invalid counts messages that failed to parse. The server answers those
// with a readable header with FORMERR.
func (c *counters) invalid(m []byte, err error) {
	c.malformed.Add(1)
	if len(m) >= 12 && !errors.Is(err, mdns.ErrShortRead) {
		c.response(mdns.RcodeFormatError)
	}
}

// handler answers the queries of one view on one transport.
type handler struct {
	cat   *Catalog
	log   *slog.Logger
	view  string
	stats *counters
	tcp   bool
	fw    *Forwarding // nil: answer from the catalog alone
}

// ServeDNS implements mdns.Handler.
func (h *handler) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("panic answering a dns query", "panic", p)
			m := new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure)
			h.write(w, m)
		}
	}()
	h.write(w, h.answer(req))
}

// write sends m, counting it first so that the counters include a
// response once its client has it. A message that does not pack becomes a
// bare SERVFAIL.
func (h *handler) write(w mdns.ResponseWriter, m *mdns.Msg) {
	wire, err := m.Pack()
	if err != nil {
		h.log.Error("pack dns response", "question", m.Question, "err", err)
		f := new(mdns.Msg)
		f.Id, f.Response, f.Opcode, f.Rcode = m.Id, true, m.Opcode, mdns.RcodeServerFailure
		f.Question = m.Question
		if wire, err = f.Pack(); err != nil {
			return
		}
		m = f
	}
	h.stats.response(m.Rcode)
	if m.Truncated {
		h.stats.truncated.Add(1)
	}
	if _, err := w.Write(wire); err != nil {
		h.log.Debug("write dns response", "err", err)
	}
}

// answer builds the response to req.
func (h *handler) answer(req *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	m.Compress = true

	switch req.Opcode {
	case mdns.OpcodeQuery:
	case mdns.OpcodeNotify, mdns.OpcodeUpdate:
		// Understood, but nobody may change or notify this DNS.
		return rcodeOnly(m, mdns.RcodeRefused)
	default:
		return rcodeOnly(m, mdns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return rcodeOnly(m, mdns.RcodeFormatError)
	}

	// EDNS(0), RFC 6891: echo an OPT with our size and the DO bit; one
	// OPT at most; version 0 only.
	var opt *mdns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*mdns.OPT); ok {
			if opt != nil {
				return rcodeOnly(m, mdns.RcodeFormatError)
			}
			opt = o
		}
	}
	size := mdns.MinMsgSize
	if opt != nil {
		m.SetEdns0(MaxUDPSize, opt.Do())
		if opt.Version() != 0 {
			m.Rcode = mdns.RcodeBadVers
			return m
		}
		size = min(max(int(opt.UDPSize()), mdns.MinMsgSize), MaxUDPSize)
	}
	if h.tcp {
		size = mdns.MaxMsgSize
	}

	q := req.Question[0]
	switch {
	case q.Qclass != mdns.ClassINET:
		m.Rcode = mdns.RcodeRefused
		return m
	case q.Qtype == mdns.TypeAXFR || q.Qtype == mdns.TypeIXFR:
		m.Rcode = mdns.RcodeRefused
		return m
	}

	res := h.resolve(q.Name, q.Qtype)
	m.Rcode = res.Rcode
	m.Authoritative = res.Authoritative
	m.Answer = res.Answer
	m.Ns = res.Ns
	m.Truncate(size)
	return m
}

// rcodeOnly answers with an rcode alone, without OPT.
func rcodeOnly(m *mdns.Msg, rcode int) *mdns.Msg {
	m.Rcode = rcode
	return m
}

// deadlineListener gives each write on its connections a deadline.
type deadlineListener struct {
	net.Listener
	timeout time.Duration
}

// Accept implements net.Listener.
func (l deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return deadlineConn{c, l.timeout}, nil
}

type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

// Write implements net.Conn.
func (c deadlineConn) Write(b []byte) (int, error) {
	if err := c.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
