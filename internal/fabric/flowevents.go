package fabric

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// FlowEventType tells whether a FlowEvent opens or ends a flow.
type FlowEventType uint8

// The types of flow events.
const (
	// FlowOpened: conntrack created the flow's entry (or it was there when
	// the watch began).
	FlowOpened FlowEventType = iota + 1
	// FlowEnded: the flow closed, was reset, revoked, or forgotten.
	FlowEnded
)

// FlowEnd tells how a flow ended.
type FlowEnd string

// How flows end.
const (
	// FlowClosed: both sides closed it (FIN), conntrack's TIME_WAIT.
	FlowClosed FlowEnd = "closed"
	// FlowReset: a side reset it (RST), conntrack's CLOSE.
	FlowReset FlowEnd = "reset"
	// FlowRevoked: this Fabric cut it, its path withdrawn (EnsureEndpoints,
	// EnsurePublic, RevokeEndpointFlows, RevokePublicFlows).
	FlowRevoked FlowEnd = "revoked"
	// FlowTimeout: conntrack forgot it in another state: idle past its
	// timeout, never answered, half closed, or deleted by someone else.
	FlowTimeout FlowEnd = "timeout"
	// FlowUnknown: its end was not seen: events were lost (the watch's
	// socket buffer overflowed) and it was gone when the watch looked.
	FlowUnknown FlowEnd = "unknown"
)

// FlowEvent is a translated flow (see Flow) opening or ending, as the
// conntrack table of its router tells it.
type FlowEvent struct {
	Type FlowEventType
	// ID is conntrack's ID of the flow's entry, the same in its two
	// events.
	ID uint32
	// Flow is the flow; State is its TCP state when the event was made.
	Flow Flow
	// Start is when the flow began: conntrack's timestamp when it has one
	// (nf_conntrack_timestamp was on when the flow began), else when the
	// watch first saw it; zero when neither is known.
	Start time.Time

	// End, Stop and the counters are set on FlowEnded events.

	// End tells how the flow ended.
	End FlowEnd
	// Stop is when it ended: when conntrack saw it close or reset, or
	// dropped its entry.
	Stop time.Time
	// PacketsIn and BytesIn count what the client sent, PacketsOut and
	// BytesOut what came back (IP packets, as conntrack accounts them;
	// zero when nf_conntrack_acct was off when the flow began).
	PacketsIn, BytesIn, PacketsOut, BytesOut uint64
}

// WatchFlows calls fn with every translated flow of a router as it opens
// and as it ends, until ctx ends (then it returns nil) or the watch fails.
// kind is KindNetwork (id the network's) or KindInternet (id ignored), and
// the namespace must exist (ErrNotFound).
//
// It listens to conntrack's NEW, UPDATE and DESTROY events in the router's
// namespace, after reporting the flows already there as opened; a socket
// filter in the kernel passes only those it acts on (see eventFilter). A
// flow ends when conntrack sees it closed (TIME_WAIT) or reset (CLOSE), at
// once, with its counters read then (the entry stays for minutes after),
// or else when its entry goes: revoked if this Fabric revoked it, timeout
// otherwise. Each flow ends once. The counters and timestamps come from
// conntrack's accounting, which the data path's Ensure calls turn on in
// the router. Only flows whose conntrack mark is their translation's (see
// translationMark) count.
//
// fn runs on the watch's goroutine: it must return quickly, or events pile
// up in the socket's buffer and, once it is full, get lost (the watch then
// rereads the table, and flows whose end it missed end as FlowUnknown).
// When this Fabric deletes the router's namespace, the watch ends with an
// error wrapping ErrNotFound (its socket would keep the old namespace
// alive, and a new one of the same name would go unwatched).
func (f *Fabric) WatchFlows(ctx context.Context, kind Kind, id string, fn func(FlowEvent)) error {
	switch kind {
	case KindNetwork:
		if err := checkID("network", id); err != nil {
			return err
		}
	case KindInternet:
	default:
		return fmt.Errorf("fabric: watch flows: namespace kind %q: want a network's or the internet's router: %w", kind, ErrInvalid)
	}
	name := f.NamespaceName(kind, id)
	// Under f.mu, no deleteNS runs between the namespace's opening and the
	// watch's registration.
	f.mu.Lock()
	w, err := f.openFlowWatch(name, kind, fn)
	if err == nil {
		f.watches.add(w)
	}
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fabric: watch flows in %s: %w", name, err)
	}
	defer f.watches.remove(w)
	defer w.close()
	err = w.run(ctx)
	switch {
	case ctx.Err() != nil:
		return nil
	case w.gone.Load():
		return fmt.Errorf("fabric: watch flows in %s: namespace deleted: %w", name, ErrNotFound)
	case err != nil:
		return fmt.Errorf("fabric: watch flows in %s: %w", name, err)
	}
	return nil
}

// flowWatch is one WatchFlows: an event socket and a query socket in the
// router's namespace, and what it told of the flows there.
type flowWatch struct {
	f      *Fabric
	ns     string
	kind   Kind
	fn     func(FlowEvent)
	events *netlink.Conn // joined to conntrack's event groups, filtered (eventFilter)
	query  *conntrack.Conn
	// open holds the flows reported opened and not ended.
	open map[uint32]openFlow
	// ended holds the flows reported ended whose entries are still there
	// (closing), so that their DESTROY events are not reported again.
	ended     map[uint32]bool
	closeOnce sync.Once
	// gone is set when the namespace was deleted under the watch.
	gone atomic.Bool
	// received counts the event messages that passed eventFilter.
	received atomic.Uint64
}

// watchSet holds a Fabric's running flow watches, by namespace.
type watchSet struct {
	mu sync.Mutex
	m  map[string]map[*flowWatch]bool
}

func (s *watchSet) add(w *flowWatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]map[*flowWatch]bool{}
	}
	if s.m[w.ns] == nil {
		s.m[w.ns] = map[*flowWatch]bool{}
	}
	s.m[w.ns][w] = true
}

func (s *watchSet) remove(w *flowWatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m[w.ns], w)
	if len(s.m[w.ns]) == 0 {
		delete(s.m, w.ns)
	}
}

// end ends the watches of namespace ns, which is being deleted.
func (s *watchSet) end(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.m[ns] {
		w.gone.Store(true)
		w.close()
	}
}

// openFlow is a flow a watch reported opened, and when it first saw it.
type openFlow struct {
	flow Flow
	seen time.Time
}

// watchReadBuffer is the event socket's receive buffer size it asks for
// (the kernel caps it at net.core.rmem_max).
const watchReadBuffer = 4 << 20

// eventFilter is a socket filter (classic BPF, run by the kernel on each
// event before it is queued) that passes only the conntrack events a watch
// acts on: those of flows with a conntrack mark (every translation sets
// one; NIC-to-NIC traffic and DNS through the router have none), and of
// those, creations, destructions, and updates to TCP's TIME_WAIT or CLOSE.
// Without it, each connection through an endpoint woke privlinkd some seven
// times (and each DNS lookup in the network three more), for events the
// watch then dropped. It reads, past the nlmsghdr (16 bytes) and nfgenmsg
// (4): the message type's low byte (offset 4: IPCTNL_MSG_CT_DELETE is 2),
// the flags' high byte (offset 7: NLM_F_CREATE is 0x04 there), CTA_MARK
// (big-endian) and CTA_PROTOINFO / CTA_PROTOINFO_TCP /
// CTA_PROTOINFO_TCP_STATE, found with the kernel's netlink attribute
// extensions.
var eventFilter = mustAssemble([]bpf.Instruction{
	/* 0 */ bpf.LoadConstant{Dst: bpf.RegA, Val: nlAttrsOffset},
	/* 1 */ bpf.LoadConstant{Dst: bpf.RegX, Val: ctaMark},
	/* 2 */ bpf.LoadExtension{Num: bpf.ExtNetlinkAttr},
	/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 17},
	/* 4 */ bpf.TAX{},
	/* 5 */ bpf.LoadIndirect{Off: 4, Size: 4},
	/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 14},
	/* 7 */ bpf.LoadAbsolute{Off: 4, Size: 1},
	/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipctnlMsgCtDelete, SkipTrue: 18},
	/* 9 */ bpf.LoadAbsolute{Off: 7, Size: 1},
	/* 10 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: unix.NLM_F_CREATE >> 8, SkipTrue: 16},
	/* 11 */ bpf.LoadConstant{Dst: bpf.RegA, Val: nlAttrsOffset},
	/* 12 */ bpf.LoadConstant{Dst: bpf.RegX, Val: ctaProtoinfo},
	/* 13 */ bpf.LoadExtension{Num: bpf.ExtNetlinkAttr},
	/* 14 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 6},
	/* 15 */ bpf.LoadConstant{Dst: bpf.RegX, Val: ctaProtoinfoTCP},
	/* 16 */ bpf.LoadExtension{Num: bpf.ExtNetlinkAttrNested},
	/* 17 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 3},
	/* 18 */ bpf.LoadConstant{Dst: bpf.RegX, Val: ctaProtoinfoTCPState},
	/* 19 */ bpf.LoadExtension{Num: bpf.ExtNetlinkAttrNested},
	/* 20 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: 1},
	/* 21 */ bpf.RetConstant{Val: 0}, // drop
	/* 22 */ bpf.TAX{},
	/* 23 */ bpf.LoadIndirect{Off: 4, Size: 1},
	/* 24 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: tcpTimeWait, SkipTrue: 2},
	/* 25 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: tcpClose, SkipTrue: 1},
	/* 26 */ bpf.RetConstant{Val: 0}, // drop
	/* 27 */ bpf.RetConstant{Val: 0xffffffff}, // pass it whole
})

// Netlink and ctnetlink numbers eventFilter uses (linux/netfilter/nfnetlink_conntrack.h).
const (
	nlAttrsOffset        = unix.NLMSG_HDRLEN + 4 // nlmsghdr, nfgenmsg
	ipctnlMsgCtDelete    = 2
	ctaProtoinfo         = 4
	ctaMark              = 8
	ctaProtoinfoTCP      = 1
	ctaProtoinfoTCPState = 1
)

func mustAssemble(prog []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(fmt.Sprintf("assemble the conntrack event filter: %v", err))
	}
	return raw
}

func (f *Fabric) openFlowWatch(name string, kind Kind, fn func(FlowEvent)) (*flowWatch, error) {
	fd, err := openNSFile(name)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	cfg := &netlink.Config{NetNS: int(fd)}
	events, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("conntrack event socket: %w", err)
	}
	query, err := ctDial(int(fd))
	if err != nil {
		events.Close()
		return nil, err
	}
	w := &flowWatch{f: f, ns: name, kind: kind, fn: fn, events: events, query: query,
		open: map[uint32]openFlow{}, ended: map[uint32]bool{}}
	_ = events.SetReadBuffer(watchReadBuffer) // best effort
	if err := events.SetBPF(eventFilter); err != nil {
		w.close()
		return nil, fmt.Errorf("filter conntrack events: %w", err)
	}
	for _, g := range []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTUpdate, netfilter.GroupCTDestroy} {
		if err := events.JoinGroup(uint32(g)); err != nil {
			w.close()
			return nil, fmt.Errorf("join conntrack event group %d: %w", g, err)
		}
	}
	return w, nil
}

func (w *flowWatch) close() {
	w.closeOnce.Do(func() {
		w.events.Close()
		w.query.Close()
	})
}

func (w *flowWatch) run(ctx context.Context) error {
	// Subscribed first, then the table read: no flow falls between.
	if err := w.resync(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, w.close) // unblocks Receive
	defer stop()
	for {
		msgs, err := w.events.Receive()
		if ctx.Err() != nil || w.gone.Load() {
			return nil // WatchFlows tells which
		}
		if errors.Is(err, unix.ENOBUFS) {
			// Events were lost: what the table holds now is the truth.
			if err := w.resync(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("receive conntrack events: %w", err)
		}
		w.received.Add(uint64(len(msgs)))
		for _, m := range msgs {
			var ev conntrack.Event
			if ev.Unmarshal(m) != nil || ev.Flow == nil {
				continue // not a flow event
			}
			w.handle(ev)
		}
	}
}

// resync reads the conntrack table: flows not yet reported open are, and
// flows reported open that are gone end as FlowUnknown.
func (w *flowWatch) resync() error {
	flows, err := dumpFlows(w.query)
	if err != nil {
		return err
	}
	now := time.Now()
	there := map[uint32]bool{}
	for i := range flows {
		cf := &flows[i]
		fl, ok := w.translated(cf)
		if !ok {
			continue
		}
		there[cf.ID] = true
		if _, seen := w.open[cf.ID]; !seen && !w.ended[cf.ID] && fl.active() {
			w.opened(cf.ID, fl, cf, now)
		}
	}
	for id, of := range w.open {
		if !there[id] {
			delete(w.open, id)
			w.fn(FlowEvent{Type: FlowEnded, ID: id, Flow: of.flow, Start: of.seen, End: FlowUnknown, Stop: now})
		}
	}
	for id := range w.ended {
		if !there[id] {
			delete(w.ended, id)
		}
	}
	return nil
}

// TCP states of conntrack that end a flow for WatchFlows.
const (
	tcpTimeWait = 7
	tcpClose    = 8
)

func (w *flowWatch) handle(ev conntrack.Event) {
	cf := ev.Flow
	fl, ok := w.translated(cf)
	if !ok {
		return
	}
	now := time.Now()
	switch ev.Type {
	case conntrack.EventNew:
		if _, seen := w.open[cf.ID]; !seen {
			w.opened(cf.ID, fl, cf, now)
		}
	case conntrack.EventUpdate:
		state := tcpState(cf)
		if w.ended[cf.ID] || (state != tcpTimeWait && state != tcpClose) {
			return
		}
		// Closed or reset: conntrack keeps the entry a while (two
		// minutes in TIME_WAIT), so the end is told now, with the
		// counters as they are (updates do not carry them).
		cur, err := w.query.Get(conntrack.Flow{TupleOrig: cf.TupleOrig})
		if err != nil {
			return // already gone: its DESTROY event follows
		}
		how := FlowClosed
		switch {
		case w.f.revocations.has(w.ns, fl.Client, fl.Target):
			// Reset by the guard between its translation's removal and
			// the deletion of its entry (see foreseeRevocations).
			how = FlowRevoked
		case state == tcpClose:
			how = FlowReset
		}
		w.ended[cf.ID] = true
		w.end(cf.ID, fl, &cur, how, now)
	case conntrack.EventDestroy:
		revoked := w.f.revocations.take(w.ns, fl.Client, fl.Target)
		if w.ended[cf.ID] {
			delete(w.ended, cf.ID)
			return
		}
		how := FlowTimeout
		switch state := tcpState(cf); {
		case revoked:
			how = FlowRevoked
		case state == tcpTimeWait:
			how = FlowClosed
		case state == tcpClose:
			how = FlowReset
		}
		stop := cf.Timestamp.Stop
		if stop.IsZero() {
			stop = now
		}
		w.end(cf.ID, fl, cf, how, stop)
	}
}

func (w *flowWatch) opened(id uint32, fl Flow, cf *conntrack.Flow, now time.Time) {
	w.open[id] = openFlow{flow: fl, seen: now}
	start := cf.Timestamp.Start
	if start.IsZero() {
		start = now
	}
	w.fn(FlowEvent{Type: FlowOpened, ID: id, Flow: fl, Start: start})
}

func (w *flowWatch) end(id uint32, fl Flow, cf *conntrack.Flow, how FlowEnd, stop time.Time) {
	start := cf.Timestamp.Start
	if of, ok := w.open[id]; ok && start.IsZero() {
		start = of.seen
	}
	delete(w.open, id)
	if state := tcpState(cf); state >= 0 && state < len(ctTCPStates) {
		fl.State = ctTCPStates[state]
	}
	w.fn(FlowEvent{
		Type: FlowEnded, ID: id, Flow: fl, Start: start, End: how, Stop: stop,
		PacketsIn: cf.CountersOrig.Packets, BytesIn: cf.CountersOrig.Bytes,
		PacketsOut: cf.CountersReply.Packets, BytesOut: cf.CountersReply.Bytes,
	})
}

// translated returns the Flow of a conntrack entry when it is an IPv4 TCP
// connection a translation of this router made: its destination rewritten
// and its mark the translation's (the SNAT address on an endpoint's path,
// the public address on a public one).
func (w *flowWatch) translated(cf *conntrack.Flow) (Flow, bool) {
	if cf.Mark == 0 {
		return Flow{}, false
	}
	fl, ok := flowOf(cf)
	if !ok {
		return Flow{}, false
	}
	marked := fl.Source.Addr() // an endpoint's SNAT address
	if w.kind == KindInternet {
		marked = fl.Target.Addr() // a public address
	}
	if !marked.Is4() || cf.Mark != translationMark(marked) {
		return Flow{}, false
	}
	return fl, true
}

// revocationLog remembers the flows a Fabric revoked, by namespace, until a
// flow watcher sees their entries go or revocationMemory passes.
type revocationLog struct {
	mu    sync.Mutex
	m     map[revocationKey]time.Time
	swept time.Time
}

type revocationKey struct {
	ns             string
	client, target netip.AddrPort
}

// revocationMemory is how long a revocation is remembered: a watcher sees
// the DESTROY event of a revoked flow within milliseconds.
const revocationMemory = time.Minute

// note records that fl, in namespace ns, is being revoked. It must be
// called before its conntrack entry is deleted.
func (l *revocationLog) note(ns string, fl Flow) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.m == nil {
		l.m = map[revocationKey]time.Time{}
	}
	if now.Sub(l.swept) > revocationMemory {
		for k, t := range l.m {
			if now.Sub(t) > revocationMemory {
				delete(l.m, k)
			}
		}
		l.swept = now
	}
	l.m[revocationKey{ns, fl.Client, fl.Target}] = now
}

// has reports whether the flow from client to target in namespace ns is
// being (or was) revoked.
func (l *revocationLog) has(ns string, client, target netip.AddrPort) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.m[revocationKey{ns, client, target}]
	return ok
}

// take reports whether the flow from client to target in namespace ns was
// revoked, and forgets it.
func (l *revocationLog) take(ns string, client, target netip.AddrPort) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := revocationKey{ns, client, target}
	_, ok := l.m[k]
	delete(l.m, k)
	return ok
}
