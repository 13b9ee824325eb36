package fabric

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"

	"github.com/mdlayher/netlink"
	"github.com/privlink/privlink/internal/policy"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// The fabric speaks to conntrack through one library, ti-mo/conntrack, for
// its four uses: dumps (listFlows, WatchFlows' resync), deletes
// (revokeFlows), events (WatchFlows) and per-flow gets (WatchFlows, for the
// counters of a flow that closed), and decodes its entries into a Flow in
// one place (flowOf). vishvananda/netlink, which the fabric keeps for links,
// addresses and routes, has dumps and deletes but no events and no get, and
// its deletes filter in userspace only; ti-mo/conntrack has all four, filters
// dumps in the kernel (family, mark and mask, zone), decodes counters,
// timestamps and conntrack's ID, and dials its socket straight into a
// namespace (netlink.Config.NetNS), so no thread has to enter the router's.
// (mdlayher/netlink, under it, does not report a dump as interrupted, but
// ctnetlink never marks one so: only nl_dump_check_consistent does, which it
// does not call. A dump that races with changes may miss entries created or
// deleted meanwhile, as with either library.)

// A Flow is one TCP connection through a translation, as the conntrack table
// of the router that translates it knows it.
type Flow struct {
	// Client is the connection's source: a NIC's or an internet host's
	// address and port.
	Client netip.AddrPort
	// Target is what the client connected to: an endpoint's or a public
	// address and port.
	Target netip.AddrPort
	// Service is where the translation leads: the service's address and
	// port.
	Service netip.AddrPort
	// Source is the client as the service sees it: the endpoint's SNAT
	// address (and a port) on an endpoint's path, Client on a public one.
	// pg_stat_activity's client_addr shows it.
	Source netip.AddrPort
	// State is conntrack's TCP state ("ESTABLISHED", "TIME_WAIT"); ""
	// for UDP and ICMP.
	State string
	// Protocol is the flow's: policy.TCP (every flow listFlows and
	// WatchFlows tell), or, among the flows a network policy revokes,
	// policy.UDP or policy.ICMP (whose ports are 0).
	Protocol policy.Protocol
}

// TCP states of conntrack (enum tcp_conntrack).
var ctTCPStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

func (fl Flow) active() bool { return fl.State != "TIME_WAIT" && fl.State != "CLOSE" }

// flowOf returns the Flow of a conntrack entry that is a translated (its
// destination rewritten) IPv4 TCP connection.
func flowOf(cf *conntrack.Flow) (Flow, bool) {
	fl, translated, ok := entryFlowOf(cf)
	return fl, ok && translated && fl.Protocol == policy.TCP
}

// ctProtocols are the protocols entryFlowOf decodes.
var ctProtocols = map[uint8]policy.Protocol{unix.IPPROTO_TCP: policy.TCP, unix.IPPROTO_UDP: policy.UDP, unix.IPPROTO_ICMP: policy.ICMP}

// entryFlowOf returns the Flow of a conntrack entry that is an IPv4 TCP,
// UDP or ICMP flow (ok), and whether a translation rewrote its destination
// (an untranslated one's Service is its Target, its Source its Client).
func entryFlowOf(cf *conntrack.Flow) (fl Flow, translated, ok bool) {
	o, r := cf.TupleOrig, cf.TupleReply
	proto, known := ctProtocols[o.Proto.Protocol]
	if !known || !o.IP.SourceAddress.Unmap().Is4() {
		return Flow{}, false, false
	}
	ap := func(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a.Unmap(), port) }
	fl = Flow{
		Client:   ap(o.IP.SourceAddress, o.Proto.SourcePort),
		Target:   ap(o.IP.DestinationAddress, o.Proto.DestinationPort),
		Service:  ap(r.IP.SourceAddress, r.Proto.SourcePort),
		Source:   ap(r.IP.DestinationAddress, r.Proto.DestinationPort),
		Protocol: proto,
	}
	if s := tcpState(cf); s >= 0 && s < len(ctTCPStates) {
		fl.State = ctTCPStates[s]
	}
	return fl, fl.Target != fl.Service, true
}

// tcpState returns the TCP state of a conntrack flow (-1 when it has none).
func tcpState(cf *conntrack.Flow) int {
	if cf.ProtoInfo.TCP == nil {
		return -1
	}
	return int(cf.ProtoInfo.TCP.State)
}

// ctDial opens a conntrack socket in the namespace fd refers to.
func ctDial(fd int) (*conntrack.Conn, error) {
	c, err := conntrack.Dial(&netlink.Config{NetNS: fd})
	if err != nil {
		return nil, fmt.Errorf("conntrack socket: %w", err)
	}
	return c, nil
}

// ipv4Flows selects IPv4 entries in the kernel.
var ipv4Flows = conntrack.NewFilter().Family(netfilter.ProtoIPv4)

// dumpFlows returns the IPv4 entries of the conntrack table c's socket
// sees, retrying (at most dumpAttempts times) a dump that failed.
func dumpFlows(c *conntrack.Conn) ([]conntrack.Flow, error) {
	var err error
	for range dumpAttempts {
		var cfs []conntrack.Flow
		if cfs, err = c.DumpFilter(ipv4Flows, nil); err == nil {
			return cfs, nil
		}
	}
	return nil, fmt.Errorf("dump conntrack table: %w", err)
}

// openTable opens a conntrack socket in r's namespace and dumps its IPv4
// entries. The caller closes the socket.
func openTable(r *nsRef) (*conntrack.Conn, []conntrack.Flow, error) {
	c, err := ctDial(int(r.fd))
	if err != nil {
		return nil, nil, fmt.Errorf("namespace %s: %w", r.name, err)
	}
	cfs, err := dumpFlows(c)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("namespace %s: %w", r.name, err)
	}
	return c, cfs, nil
}

// listFlows returns the translated TCP flows of r's conntrack table.
func listFlows(r *nsRef) ([]Flow, error) {
	c, cfs, err := openTable(r)
	if err != nil {
		return nil, err
	}
	c.Close()
	var out []Flow
	for i := range cfs {
		if fl, ok := flowOf(&cfs[i]); ok {
			out = append(out, fl)
		}
	}
	return out, nil
}

// deleteFlows deletes the entries of r's conntrack table whose TCP, UDP
// or ICMP flows revoke selects (told whether a translation rewrote the
// flow's destination), and returns those flows (whether or not their
// deletion succeeded; an entry already gone counts as deleted). If note is
// not nil, it is told each translated flow before its entry goes.
func deleteFlows(r *nsRef, revoke func(fl Flow, translated bool) bool, note func(Flow)) ([]Flow, error) {
	c, cfs, err := openTable(r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var matched []Flow
	var errs []error
	for i := range cfs {
		fl, translated, ok := entryFlowOf(&cfs[i])
		if !ok || !revoke(fl, translated) {
			continue
		}
		if note != nil && translated {
			note(fl)
		}
		matched = append(matched, fl)
		// The kernel finds the entry by its original tuple.
		if err := c.Delete(conntrack.Flow{TupleOrig: cfs[i].TupleOrig}); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("flow %s -> %s: %w", fl.Client, fl.Target, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return matched, fmt.Errorf("namespace %s: delete conntrack entries: %w", r.name, err)
	}
	return matched, nil
}

// revokeFlows cuts the translated flows of r's namespace that revoke
// selects: it deletes their conntrack entries, so that their next packets
// are no longer translated (and reach the router's own stack, which resets
// them, or the service guard, which does too), and then probes both ends of
// each live one (see tickle) so that sockets blocked in a read learn at
// once too. It returns the live flows it cut, and those of foreseen (see
// foreseeRevocations; nil is none) whatever their state; entries of other
// connections already closing (TIME_WAIT, CLOSE) go silently. Each flow is
// noted in the Fabric's revocation log before its entry goes, so that a
// flow watcher (WatchFlows) tells its end as revoked.
func (f *Fabric) revokeFlows(r *nsRef, revoke func(Flow) bool, foreseen map[flowKey]bool) ([]Flow, error) {
	tcp := func(fl Flow, translated bool) bool { return translated && fl.Protocol == policy.TCP && revoke(fl) }
	revoked, err := deleteFlows(r, tcp, func(fl Flow) { f.revocations.note(r.name, fl) })
	revoked = slices.DeleteFunc(revoked, func(fl Flow) bool { return !fl.active() && !foreseen[keyOf(fl)] })
	if len(revoked) > 0 {
		err = errors.Join(err, tickle(r, revoked))
	}
	return revoked, err
}

// foreseeRevocations notes, in the Fabric's revocation log, the live flows
// of r that revoke selects, before the translations change: from the moment
// a translation goes until its flows' conntrack entries are deleted, a
// packet of such a flow meets the guard, which resets it, and a flow
// watcher that sees that reset must tell the end as revoked, not as a
// reset. The returned func forgets the notes (for when the change is not
// made after all). Listing the flows is best effort: without it, such an
// end is told as a reset.
//
// It returns the flows it noted, to pass to revokeFlows, which cuts them
// even if the guard's reset left them closing: the guard resets one side
// only.
func (f *Fabric) foreseeRevocations(r *nsRef, revoke func(Flow) bool) (foreseen map[flowKey]bool, forget func()) {
	flows, err := listFlows(r)
	if err != nil {
		f.log.Debug("cannot list flows before a change", "ns", r.name, "err", err)
		return nil, func() {}
	}
	foreseen = map[flowKey]bool{}
	for _, fl := range flows {
		if fl.active() && revoke(fl) {
			f.revocations.note(r.name, fl)
			foreseen[keyOf(fl)] = true
		}
	}
	return foreseen, func() {
		for k := range foreseen {
			f.revocations.take(r.name, k.client, k.target)
		}
	}
}

// flowKey identifies a flow of one namespace.
type flowKey struct{ client, target netip.AddrPort }

func keyOf(fl Flow) flowKey { return flowKey{fl.Client, fl.Target} }

// tickle sends, from r's namespace, a TCP SYN to each end of every flow, as
// from its peer: to the client from the target it connected to, and to the
// service from the source it knows. A SYN on an established connection makes
// the receiver answer with a challenge ACK (RFC 5961 4.2), whatever the
// sequence number; that ACK now reaches the router's own stack (which has
// no socket for it and answers with a reset whose sequence number is the
// ACK's acknowledgement, which the receiver accepts) or the service guard
// (which resets it the same way). So both sockets are reset within a round
// trip, including one blocked in a read that would otherwise wait forever.
// The probes carry tickleMark, which keeps them out of conntrack.
func tickle(r *nsRef, flows []Flow) error { return tickleEnds(r, flows, nil) }

// tickleEnds is tickle that probes only the ends whose address reach
// reports true for (nil: every end): after a peering link went, the ends
// beyond it have no route from r, and the router on their side probes
// them.
func tickleEnds(r *nsRef, flows []Flow, reach func(netip.Addr) bool) error {
	fd := -1
	err := r.do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, tickleMark); err != nil {
			return fmt.Errorf("raw socket: set mark: %w", err)
		}
		return nil
	})
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", r.name, err)
	}
	var errs []error
	for _, fl := range flows {
		for _, p := range [][2]netip.AddrPort{{fl.Target, fl.Client}, {fl.Source, fl.Service}} {
			if reach != nil && !reach(p[1].Addr()) {
				continue
			}
			pkt := synPacket(p[0], p[1], rand.Uint32())
			if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: p[1].Addr().As4()}); err != nil {
				errs = append(errs, fmt.Errorf("namespace %s: probe %s from %s: %w", r.name, p[1], p[0], err))
			}
		}
	}
	return errors.Join(errs...)
}

// synPacket returns an IPv4 packet holding a TCP SYN from src to dst.
func synPacket(src, dst netip.AddrPort, seq uint32) []byte {
	const ipLen, tcpLen = 20, 20
	b := make([]byte, ipLen+tcpLen)
	b[0] = 0x45 // version 4, 5 words
	binary.BigEndian.PutUint16(b[2:], ipLen+tcpLen)
	binary.BigEndian.PutUint16(b[6:], 0x4000) // don't fragment
	b[8] = 64
	b[9] = unix.IPPROTO_TCP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	binary.BigEndian.PutUint16(b[10:], checksum(b[:ipLen], 0))

	t := b[ipLen:]
	binary.BigEndian.PutUint16(t[0:], src.Port())
	binary.BigEndian.PutUint16(t[2:], dst.Port())
	binary.BigEndian.PutUint32(t[4:], seq)
	t[12] = 5 << 4 // 5 words, no options
	t[13] = tcpFlagSYN
	binary.BigEndian.PutUint16(t[14:], 1024) // window
	// The pseudo-header: addresses, protocol, TCP length.
	var pseudo uint32
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s4[i:])) + uint32(binary.BigEndian.Uint16(d4[i:]))
	}
	pseudo += unix.IPPROTO_TCP + tcpLen
	binary.BigEndian.PutUint16(t[16:], checksum(t, pseudo))
	return b
}

// checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ensureFlowAccounting turns on, in r's namespace, conntrack's byte and
// packet accounting, its timestamps and its events for every flow, so that
// a flow watcher (WatchFlows) sees each translated flow end with its bytes
// and duration. They apply to flows created from then on: with events in
// their default mode (2, for flows created while someone listens), a flow
// created while no watcher listened would never tell its end. The settings
// exist once conntrack is loaded, which the data path's table does;
// without them it does nothing.
func ensureFlowAccounting(r *nsRef) error {
	return r.do(func() error {
		for _, k := range []string{"net/netfilter/nf_conntrack_acct", "net/netfilter/nf_conntrack_timestamp", "net/netfilter/nf_conntrack_events"} {
			if _, err := setSysctl(k, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}
