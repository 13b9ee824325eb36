package proxyrelay

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/fabric/fabrictest"
	"github.com/privlink/privlink/internal/testkit"
)

// TestRelayAcrossNamespaces runs the relay as the data path will: three
// hosts on the emulated internet, each a namespace of its own. The consumer
// connects to the relay's address in the relay's namespace; the relay
// connects onward from that namespace, bound to its Source address, to the
// backend in a third. The backend sees the relay's Source as its peer, and
// the header names the consumer and the address it dialled.
func TestRelayAcrossNamespaces(t *testing.T) {
	f := fabrictest.New(t, "prx", nil)
	consumerIP, relayIP, backendIP := netip.MustParseAddr("198.18.61.1"), netip.MustParseAddr("198.18.61.2"), netip.MustParseAddr("198.18.61.3")
	var ns [3]string
	for i, a := range []netip.Addr{consumerIP, relayIP, backendIP} {
		var err error
		if ns[i], err = f.EnsureInternetHost(a); err != nil {
			t.Fatal(err)
		}
	}
	consumerNS, relayNS, backendNS := ns[0], ns[1], ns[2]

	ln, err := f.ListenTCP(backendNS, netip.AddrPortFrom(backendIP, 7001).String())
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		peer, src, dst netip.AddrPort
		linkID         uint32
	}
	views := make(chan view, 4)
	testkit.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		v := view{peer: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
		var err error
		if v.src, v.dst, v.linkID, _, err = parseHeader(r); err != nil {
			t.Error(err)
			return
		}
		views <- v
		line, err := r.ReadString('\n')
		if err == nil {
			_, err = c.Write([]byte(line))
		}
		if err != nil {
			return
		}
		r.ReadByte() // until the session ends
	})

	r := New(context.Background(), f, nil, Options{})
	t.Cleanup(func() { r.Close() })
	listen := netip.AddrPortFrom(relayIP, 7000)
	route := Route{Name: "pe", ListenNamespace: relayNS, Listen: listen, DialNamespace: relayNS, Source: relayIP,
		Upstream: netip.AddrPortFrom(backendIP, 7001), ProxyProtocol: true, LinkID: 0x2000001}
	if err := r.Set([]Route{route}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	nc, err := f.DialContext(ctx, consumerNS, "tcp", listen.String())
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*net.TCPConn)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(bound))
	ping(t, c)
	var v view
	select {
	case v = <-views:
	case <-time.After(bound):
		t.Fatal("backend saw no connection")
	}
	if v.peer.Addr() != relayIP {
		t.Errorf("backend's peer %s: want the route's source %s", v.peer, relayIP)
	}
	if want := c.LocalAddr().(*net.TCPAddr).AddrPort(); v.src != want || v.src.Addr() != consumerIP {
		t.Errorf("header source %s: want the consumer's %s", v.src, want)
	}
	if v.dst != listen || v.linkID != route.LinkID {
		t.Errorf("header destination %s LinkID %#x: want %s and %#x", v.dst, v.linkID, listen, route.LinkID)
	}

	// Revocation resets the live session.
	if err := r.Set(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("session still open after its route went")
	}
}
