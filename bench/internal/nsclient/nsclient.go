// Package nsclient runs the benchmark programs' clients inside a network
// namespace, never in the host's (the network rule): commands under `ip
// netns exec`, and DNS queries over a socket opened in the namespace.
package nsclient

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/privlink/privlink/internal/fabric"
)

// Command is name with args run inside namespace ns (`ip netns exec`).
func Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Resolver asks a network's DNS (168.63.129.16, what a NIC's resolv.conf
// names) from a UDP socket inside a namespace. It is safe for concurrent
// use; queries go one at a time.
type Resolver struct {
	ns string
	mu sync.Mutex
	c  *mdns.Conn
}

// DialResolver opens a Resolver's socket in namespace ns (the daemon's
// fabric, fab, knows the namespace).
func DialResolver(ctx context.Context, fab *fabric.Fabric, ns string) (*Resolver, error) {
	c, err := fab.DialContext(ctx, ns, "udp", netip.AddrPortFrom(fabric.DNSAddr, 53).String())
	if err != nil {
		return nil, fmt.Errorf("DNS socket in %s: %w", ns, err)
	}
	return &Resolver{ns: ns, c: &mdns.Conn{Conn: c, UDPSize: mdns.MaxMsgSize}}, nil
}

// Close closes the socket.
func (r *Resolver) Close() error { return r.c.Close() }

// A asks for name's A records (fully qualified, with its final dot),
// following the CNAME in the answer, and returns them sorted with the
// answer's rcode. An answer to an earlier query that timed out is skipped.
func (r *Resolver) A(name string, timeout time.Duration) ([]netip.Addr, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := new(mdns.Msg).SetQuestion(name, mdns.TypeA)
	if err := r.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, 0, err
	}
	if err := r.c.WriteMsg(m); err != nil {
		return nil, 0, err
	}
	for {
		a, err := r.c.ReadMsg()
		if err != nil {
			return nil, 0, err
		}
		if a.Id != m.Id {
			continue // a late answer to a query that timed out
		}
		var out []netip.Addr
		for _, rr := range a.Answer {
			if rec, ok := rr.(*mdns.A); ok {
				if ip, ok := netip.AddrFromSlice(rec.A.To4()); ok {
					out = append(out, ip)
				}
			}
		}
		slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
		return out, a.Rcode, nil
	}
}
