package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/privlink/privlink/internal/fabric"
)

// dnsServing is one DNS served on addr:53 (UDP and TCP) in a namespace:
// a network's view (Network) or a site's DNS (Sites).
type dnsServing struct {
	cancel context.CancelFunc
	done   chan struct{}
	inode  uint64 // of the namespace the sockets live in
}

// startDNS opens addr:53 in the namespace ns (whose inode is ino) and
// serves it with serve until stopped.
func startDNS(fab *fabric.Fabric, ns string, ino uint64, addr netip.Addr, serve func(context.Context, net.PacketConn, net.Listener) error, log *slog.Logger) (*dnsServing, error) {
	hostPort := net.JoinHostPort(addr.String(), "53")
	pc, err := fab.ListenUDP(ns, hostPort)
	if err != nil {
		return nil, fmt.Errorf("at %s: %w", addr, err)
	}
	ln, err := fab.ListenTCP(ns, hostPort)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("at %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &dnsServing{cancel: cancel, done: make(chan struct{}), inode: ino}
	go func() {
		defer close(s.done)
		if err := serve(ctx, pc, ln); err != nil {
			log.Warn("DNS stopped", "addr", addr.String(), "err", err)
		}
	}()
	return s, nil
}

// live reports whether s (nil: none) still serves in the namespace whose
// inode is ino; one stopped on an error, or in a namespace made anew, is
// to be served again.
func (s *dnsServing) live(ino uint64) bool {
	if s == nil || s.inode != ino {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop ends s (nil: nothing) and waits for it.
func (s *dnsServing) stop() {
	if s != nil {
		s.cancel()
		<-s.done
	}
}
