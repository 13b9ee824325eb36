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

// TestRelayNamespaceMadeAgain: a listen namespace deleted and made again
// under its name is a new Epoch; Set with it listens in the new
// namespace (with the old Epoch the route would be left listening in the
// dead one).
func TestRelayNamespaceMadeAgain(t *testing.T) {
	f := fabrictest.New(t, "prxe", nil)
	consumerIP, relayIP := netip.MustParseAddr("198.18.61.11"), netip.MustParseAddr("198.18.61.12")
	consumerNS, err := f.EnsureInternetHost(consumerIP)
	if err != nil {
		t.Fatal(err)
	}
	relayNS, err := f.EnsureInternetHost(relayIP)
	if err != nil {
		t.Fatal(err)
	}
	// The upstream lives in the consumer's namespace, which stays: the
	// relay dials it for every connection it accepts, and an upstream that
	// refused would make the relay reset the client, maybe before its
	// connect returned (ECONNRESET, seen under load in CI).
	upstream := netip.AddrPortFrom(consumerIP, 7001)
	ln, err := f.ListenTCP(consumerNS, upstream.String())
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, ln, func(c net.Conn) { c.Close() })
	r := New(context.Background(), f, nil, Options{})
	t.Cleanup(func() { r.Close() })
	listen := netip.AddrPortFrom(relayIP, 7000)
	set := func() uint64 {
		t.Helper()
		ino, err := f.NamespaceInode(relayNS)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Set([]Route{{Name: "pe", ListenNamespace: relayNS, Listen: listen, DialNamespace: relayNS,
			Upstream: upstream, Epoch: ino}}); err != nil {
			t.Fatal(err)
		}
		return ino
	}
	connects := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		c, err := f.DialContext(ctx, consumerNS, "tcp", listen.String())
		if err != nil {
			t.Logf("dial %s: %v", listen, err)
			return false
		}
		c.Close()
		return true
	}
	first := set()
	if !connects() {
		t.Fatal("no listener in the relay's namespace")
	}
	if err := f.DeleteInternetHost(relayIP); err != nil {
		t.Fatal(err)
	}
	if _, err := f.EnsureInternetHost(relayIP); err != nil {
		t.Fatal(err)
	}
	if connects() {
		t.Fatal("connected to the new namespace before the relay listened there")
	}
	if again := set(); again == first {
		t.Fatalf("the namespace made again has the same inode %d", again)
	}
	if !connects() {
		t.Error("the route with the new namespace's epoch does not listen in it")
	}
}
