package ipsec_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/fabric/fabrictest"
	"github.com/privlink/privlink/internal/ipsec"
	"github.com/privlink/privlink/internal/testkit"
)

func TestConnValidate(t *testing.T) {
	good := ipsec.Conn{
		Name:      "c1",
		LocalAddr: netip.MustParseAddr("198.18.50.1"), RemoteAddr: netip.MustParseAddr("198.18.50.2"),
		LocalTS:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")},
		PSK:      "k",
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good conn: %v", err)
	}
	for name, mut := range map[string]func(*ipsec.Conn){
		"bad name":     func(c *ipsec.Conn) { c.Name = "a b" },
		"same address": func(c *ipsec.Conn) { c.RemoteAddr = c.LocalAddr },
		"no address":   func(c *ipsec.Conn) { c.LocalAddr = netip.Addr{} },
		"no remote ts": func(c *ipsec.Conn) { c.RemoteTS = nil },
		"empty key":    func(c *ipsec.Conn) { c.PSK = "" },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// side is one gateway of the tunnel test: an internet host whose lo also
// holds an address of the network behind it.
type side struct {
	ns     string
	public netip.Addr
	inside netip.Addr
	space  netip.Prefix
	d      *ipsec.Daemon
}

func newSide(t testing.TB, f *fabric.Fabric, public, inside, space string) *side {
	t.Helper()
	s := &side{public: netip.MustParseAddr(public), inside: netip.MustParseAddr(inside), space: netip.MustParsePrefix(space)}
	ns, err := f.EnsureInternetHost(s.public)
	if err != nil {
		t.Fatal(err)
	}
	s.ns = ns
	if out, err := exec.Command("ip", "-n", ns, "addr", "add", inside+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	s.d = ipsec.New(t.TempDir(), ns, nil)
	ctx := context.Background()
	if err := s.d.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("tail", "-40", s.d.Dir()+"/charon.log").Output()
			t.Logf("charon %s log:\n%s", public, out)
		}
		if err := s.d.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func (s *side) conn(peer *side, key string) ipsec.Conn {
	return ipsec.Conn{Name: "tun", LocalAddr: s.public, RemoteAddr: peer.public,
		LocalTS: []netip.Prefix{s.space}, RemoteTS: []netip.Prefix{peer.space}, PSK: key}
}

func waitStatus(t testing.TB, s *side, want ipsec.Status) ipsec.State {
	t.Helper()
	var st ipsec.State
	testkit.WaitFor(t, 60*time.Second, fmt.Sprintf("%s tunnel %s", s.public, want), func() error {
		var err error
		st, err = s.d.State(context.Background(), "tun")
		if err != nil {
			return err
		}
		if st.Status != want {
			return fmt.Errorf("status %s", st.Status)
		}
		return nil
	})
	return st
}

// echo serves a line echo on addr inside ns.
func echo(t testing.TB, f *fabric.Fabric, ns, addr string) {
	ln, err := f.ListenTCP(ns, addr)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// roundTrip dials addr from ns and sends one line, which must come back.
func roundTrip(f *fabric.Fabric, ns, addr, line string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := f.DialContext(ctx, ns, "tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echo %q, want %q", got, line)
	}
	return nil
}

// TestTunnel: two gateways on the emulated internet speak IKEv2 with a
// pre-shared key and carry the networks behind them in ESP-in-UDP; the
// internet router sees only UDP 500/4500 and never the payload; a wrong key
// leaves both NotConnected with no traffic; unloading cuts a live session;
// a charon survives the loss of its Daemon value and is adopted again.
func TestTunnel(t *testing.T) {
	testkit.RequireRoot(t, "it runs charon in network namespaces", "tcpdump", "nsenter", "unshare")
	if err := ipsec.Available(); err != nil {
		t.Skip(err)
	}
	f := fabrictest.New(t, "ips", nil)
	a := newSide(t, f, "198.18.50.1", "10.1.0.1", "10.1.0.0/16")
	b := newSide(t, f, "198.18.50.2", "10.2.0.1", "10.2.0.0/16")
	ctx := context.Background()
	echo(t, f, b.ns, "10.2.0.1:7000")
	target := "10.2.0.1:7000"

	// Without a tunnel, the inside addresses are unreachable.
	if err := roundTrip(f, a.ns, target, "before"); err == nil {
		t.Fatal("reached the far network without a tunnel")
	}

	// A wrong key: never Connected, no traffic.
	if err := a.d.Load(ctx, a.conn(b, "key-one")); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Load(ctx, b.conn(a, "key-two")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "an authentication failure in charon's log", func() error {
		for _, s := range []*side{a, b} {
			if logHas(t, s, "AUTHENTICATION_FAILED") || logHas(t, s, "tried 1 shared key") {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	for _, s := range []*side{a, b} {
		if st, err := s.d.State(ctx, "tun"); err != nil || st.Status == ipsec.Connected {
			t.Fatalf("%s with mismatched keys: %+v, %v", s.public, st, err)
		}
	}
	if err := roundTrip(f, a.ns, target, "mismatch"); err == nil {
		t.Fatal("traffic passed with mismatched keys")
	}

	// The right key on both sides: Connected, traffic passes, encrypted.
	capture := testkit.Capture(t, f.NamespaceName(fabric.KindInternet, ""))
	if err := b.d.Load(ctx, b.conn(a, "key-one")); err != nil {
		t.Fatal(err)
	}
	if err := a.d.Initiate(ctx, "tun"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, ipsec.Connected)
	waitStatus(t, b, ipsec.Connected)
	const marker = "PLAINTEXT-MARKER-7f3a"
	testkit.WaitFor(t, 20*time.Second, "a round trip through the tunnel", func() error {
		return roundTrip(f, a.ns, target, marker)
	})
	st := waitStatus(t, a, ipsec.Connected)
	if log, err := exec.Command("grep", "-m1", "selected proposal: ESP", a.d.Dir()+"/charon.log").Output(); err == nil {
		t.Logf("charon: %s", bytes.TrimSpace(log))
	}
	if st.BytesOut == 0 || st.BytesIn == 0 {
		t.Errorf("counters after traffic: %+v", st)
	}
	pkts, raw := capture()
	if len(pkts) == 0 {
		t.Fatalf("tcpdump in the internet saw nothing (%d bytes captured)", len(raw))
	}
	t.Logf("internet saw %d packets, first: %s", len(pkts), pkts[0])
	for _, p := range pkts {
		if !ikeOrESP.MatchString(p) {
			t.Errorf("internet saw a packet that is not IKE or ESP-in-UDP: %s", p)
		}
		if strings.Contains(p, ".7000") || strings.Contains(p, "10.2.0.1") || strings.Contains(p, "10.1.0.1") {
			t.Errorf("internet saw an inside address or port: %s", p)
		}
	}
	if bytes.Contains(raw, []byte(marker)) {
		t.Error("internet saw the payload in clear")
	}

	// A live session, then unloading on one side: cut within a second.
	c, err := f.DialContext(ctx, a.ns, "tcp4", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := lineEcho(c, r, "live"); err != nil {
		t.Fatal(err)
	}
	if err := a.d.Unload(ctx, "tun"); err != nil {
		t.Fatal(err)
	}
	if err := lineEcho(c, r, "after"); err == nil {
		t.Fatal("a live session survived the tunnel's removal")
	}
	if st, err := a.d.State(ctx, "tun"); err != nil || st.Status != ipsec.NotConnected {
		t.Fatalf("after unload: %+v, %v", st, err)
	}

	// Adoption: a new Daemon value on the same directory finds the same
	// charon (privlinkd restarted), and a charon killed with SIGKILL is
	// replaced by Ensure.
	pid := b.d.PID()
	again := ipsec.New(b.d.Dir(), b.ns, nil)
	if err := again.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if again.PID() != pid {
		t.Fatalf("Ensure started a second charon (%d, had %d)", again.PID(), pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "charon gone", func() error {
		if again.Running(ctx) {
			return fmt.Errorf("still answers")
		}
		return nil
	})
	if err := again.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if p := again.PID(); p == 0 || p == pid {
		t.Fatalf("after kill -9 and Ensure: pid %d (was %d)", p, pid)
	}
}

// ikeOrESP matches tcpdump's line for IKE or ESP-in-UDP between the two
// gateways' ports 500 or 4500.
var ikeOrESP = regexp.MustCompile(`IP 198\.18\.50\.[12]\.(500|4500) > 198\.18\.50\.[12]\.(500|4500): (isakmp|NONESP-encap|UDP-encap)`)

func lineEcho(c net.Conn, r *bufio.Reader, line string) error {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echo %q", got)
	}
	return nil
}

func logHas(t *testing.T, s *side, what string) bool {
	out, err := exec.Command("cat", s.d.Dir()+"/charon.log").Output()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(out, []byte(what))
}
