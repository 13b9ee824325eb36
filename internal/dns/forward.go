package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Forward sends the names of Zone (and below it) to the DNS server at
// Upstream: a conditional forwarder, as an on-premises DNS server has for
// privatelink.postgres.database.azure.com toward a DNS private resolver's
// inbound endpoint.
type Forward struct {
	Zone     string
	Upstream netip.AddrPort
}

// Forwarding is what ServeForwarding adds to a view: conditional
// forwarders, and how to reach their upstreams.
type Forwarding struct {
	// Zones are the forwarders; the longest zone containing a name wins.
	Zones []Forward
	// Dial opens a connection to an upstream ("udp4" or "tcp4", an IP
	// literal and port), e.g. from inside a namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Timeout bounds one exchange with an upstream; 0 means 2 s.
	Timeout time.Duration
}

// ServeForwarding is Serve for a view that forwards: a name inside one of
// fw's zones is asked of that zone's upstream and its answer relayed;
// any other name is answered from view, and when that answer is a CNAME
// chain leading into a forwarded zone (srv1.postgres.database.azure.com →
// srv1.privatelink.postgres.database.azure.com), the chain stops there and
// the rest comes from the zone's upstream, as a recursive resolver with
// conditional forwarders answers. An upstream that fails or does not
// answer in time is answered with SERVFAIL.
func (s *Server) ServeForwarding(ctx context.Context, view string, fw Forwarding, pc net.PacketConn, ln net.Listener) error {
	if fw.Dial == nil {
		return fmt.Errorf("dns: serve view %q: forwarding without Dial", view)
	}
	zones := make([]Forward, 0, len(fw.Zones))
	for _, z := range fw.Zones {
		if !z.Upstream.IsValid() {
			return fmt.Errorf("dns: serve view %q: forward %q: no upstream", view, z.Zone)
		}
		z.Zone = mdns.CanonicalName(z.Zone)
		zones = append(zones, z)
	}
	fw.Zones = zones
	if fw.Timeout == 0 {
		fw.Timeout = 2 * time.Second
	}
	return s.serve(ctx, view, &fw, pc, ln)
}

// upstream returns the upstream of the most specific zone holding name.
func (fw *Forwarding) upstream(name string) (netip.AddrPort, bool) {
	name = mdns.CanonicalName(name)
	best, bestLen := netip.AddrPort{}, -1
	for _, z := range fw.Zones {
		if (name == z.Zone || z.Zone == "." || strings.HasSuffix(name, "."+z.Zone)) && len(z.Zone) > bestLen {
			best, bestLen = z.Upstream, len(z.Zone)
		}
	}
	return best, bestLen >= 0
}

// exchange asks up for (name, qtype) over UDP, and over TCP when the
// answer is truncated. An upstream silent over UDP is not asked again
// over TCP: the client gets its SERVFAIL within one Timeout.
func (fw *Forwarding) exchange(up netip.AddrPort, name string, qtype uint16) (*mdns.Msg, error) {
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	q.RecursionDesired = true
	q.SetEdns0(MaxUDPSize, false)
	ctx, cancel := context.WithTimeout(context.Background(), fw.Timeout)
	defer cancel()
	r, err := fw.exchangeOn(ctx, "udp4", up, q)
	if err != nil || !r.Truncated {
		return r, err
	}
	ctx, cancel = context.WithTimeout(context.Background(), fw.Timeout)
	defer cancel()
	return fw.exchangeOn(ctx, "tcp4", up, q)
}

func (fw *Forwarding) exchangeOn(ctx context.Context, network string, up netip.AddrPort, q *mdns.Msg) (*mdns.Msg, error) {
	c, err := fw.Dial(ctx, network, up.String())
	if err != nil {
		return nil, fmt.Errorf("dns: forward to %s: %w", up, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	cl := &mdns.Client{Net: strings.TrimSuffix(network, "4"), UDPSize: MaxUDPSize}
	r, _, err := cl.ExchangeWithConnContext(ctx, q, &mdns.Conn{Conn: c, UDPSize: MaxUDPSize})
	if err != nil {
		return nil, fmt.Errorf("dns: forward %s to %s over %s: %w", q.Question[0].Name, up, network, err)
	}
	return r, nil
}

// resolve answers (name, qtype) from the view, through the forwarders
// when the handler has them.
func (h *handler) resolve(name string, qtype uint16) Result {
	if h.fw == nil {
		return h.cat.Resolve(h.view, name, qtype)
	}
	if up, ok := h.fw.upstream(name); ok {
		return h.forward(up, name, qtype, nil)
	}
	res := h.cat.Resolve(h.view, name, qtype)
	for i, rr := range res.Answer {
		c, ok := rr.(*mdns.CNAME)
		if !ok {
			continue
		}
		if up, ok := h.fw.upstream(c.Target); ok {
			return h.forward(up, c.Target, qtype, res.Answer[:i+1:i+1])
		}
	}
	return res
}

// forward relays up's answer to (name, qtype) after the records of chain.
func (h *handler) forward(up netip.AddrPort, name string, qtype uint16, chain []mdns.RR) Result {
	r, err := h.fw.exchange(up, name, qtype)
	if err != nil {
		h.log.Warn("dns forwarder: no answer", "name", name, "upstream", up, "err", err)
		return Result{Rcode: mdns.RcodeServerFailure}
	}
	return Result{Rcode: r.Rcode, Answer: append(chain, r.Answer...), Ns: r.Ns}
}
