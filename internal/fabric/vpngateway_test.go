package fabric

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/ipsec"
	"github.com/privlink/privlink/internal/testkit"
)

func gatewaySpec(t *testing.T, id, network, addr, space, public string, tunnels ...VPNTunnel) VPNGatewaySpec {
	return VPNGatewaySpec{ID: id, Network: network, Address: netip.MustParsePrefix(addr),
		Space: []netip.Prefix{netip.MustParsePrefix(space)}, Public: netip.MustParseAddr(public),
		Dir: t.TempDir(), Tunnels: tunnels}
}

func tunnel(name, remote, space, key string) VPNTunnel {
	return VPNTunnel{Name: name, Remote: netip.MustParseAddr(remote), RemoteSpace: []netip.Prefix{netip.MustParsePrefix(space)}, PSK: key}
}

func waitTunnel(t *testing.T, f *Fabric, spec VPNGatewaySpec, name string, want ipsec.Status) {
	t.Helper()
	testkit.WaitFor(t, 60*time.Second, fmt.Sprintf("gateway %s tunnel %s %s", spec.ID, name, want), func() error {
		sts, err := f.VPNTunnelStates(context.Background(), spec.ID, spec.Dir)
		if err != nil {
			return err
		}
		if sts[name].Status != want {
			return fmt.Errorf("states %v", sts)
		}
		return nil
	})
}

// echoLine sends line on c and wants it back within a second.
func echoLine(c net.Conn, r *bufio.Reader, line string) error {
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

var gatewayIKEOrESP = regexp.MustCompile(`IP 198\.18\.60\.[12]\.(500|4500) > 198\.18\.60\.[12]\.(500|4500): (isakmp|NONESP-encap|UDP-encap)`)

// TestVPNGateway: two networks' gateways on the emulated internet carry
// the networks' NICs to each other in ESP-in-UDP: a mismatched key never
// connects and nothing passes (nor leaks in clear); the right key
// connects, and the internet sees only IKE and ESP-in-UDP between the
// public addresses; removing the tunnel cuts a live session at once; a
// charon killed with SIGKILL is replaced by the next Ensure with its
// tunnel loaded again.
func TestVPNGateway(t *testing.T) {
	testkit.RequireRoot(t, "it runs charon in network namespaces", "tcpdump", "nsenter", "unshare")
	if err := ipsec.Available(); err != nil {
		t.Skip(err)
	}
	f := newTestFabric(t)
	ctx := context.Background()
	mustEnsureNetwork(t, f, "a", "10.1.1.0/24", "10.1.255.0/27")
	mustEnsureNetwork(t, f, "b", "10.2.1.0/24", "10.2.255.0/27")
	na := mustEnsureNIC(t, f, "na", "a", "10.1.1.4/24")
	nb := mustEnsureNIC(t, f, "nb", "b", "10.2.1.4/24")
	atB := serve(t, f, nb, "10.2.1.4:0", "b")
	ln, err := f.ListenTCP(nb, "10.2.1.4:0")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
	echoAt := ln.Addr().String()

	ga := gatewaySpec(t, "ga", "a", "10.1.255.4/27", "10.1.0.0/16", "198.18.60.1", tunnel("ab", "198.18.60.2", "10.2.0.0/16", "key-one"))
	gb := gatewaySpec(t, "gb", "b", "10.2.255.4/27", "10.2.0.0/16", "198.18.60.2", tunnel("ba", "198.18.60.1", "10.1.0.0/16", "key-two"))
	t.Cleanup(func() {
		for _, s := range []VPNGatewaySpec{ga, gb} {
			if t.Failed() {
				out, _ := exec.Command("tail", "-30", s.Dir+"/charon.log").Output()
				t.Logf("charon %s:\n%s", s.ID, out)
			}
			if err := f.DeleteVPNGateway(s.ID, s.Network, s.Dir); err != nil {
				t.Error(err)
			}
		}
	})
	if err := f.EnsureInternet(); err != nil {
		t.Fatal(err)
	}
	inet := f.NamespaceName(KindInternet, "")

	// Mismatched keys: never Connected, nothing passes, nothing in clear.
	leak := testkit.Capture(t, inet)
	for _, s := range []VPNGatewaySpec{ga, gb} {
		if err := f.EnsureVPNGateway(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 30*time.Second, "an authentication failure", func() error {
		for _, s := range []VPNGatewaySpec{ga, gb} {
			if b, _ := os.ReadFile(s.Dir + "/charon.log"); bytes.Contains(b, []byte("AUTHENTICATION_FAILED")) || bytes.Contains(b, []byte("tried 1 shared key")) {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	mustNotConnect(t, f, na, atB)
	pkts, _ := leak()
	for _, p := range pkts {
		if strings.Contains(p, "10.1.") || strings.Contains(p, "10.2.") {
			t.Errorf("with mismatched keys the internet saw an inside address: %s", p)
		}
	}

	// The right key: connected, traffic passes encrypted.
	gb.Tunnels[0].PSK = "key-one"
	watch := testkit.Capture(t, inet)
	if err := f.EnsureVPNGateway(ctx, gb); err != nil {
		t.Fatal(err)
	}
	if err := f.EnsureVPNGateway(ctx, ga); err != nil { // initiates again
		t.Fatal(err)
	}
	waitTunnel(t, f, ga, "ab", ipsec.Connected)
	waitTunnel(t, f, gb, "ba", ipsec.Connected)
	testkit.WaitFor(t, 20*time.Second, "a call through the tunnel", func() error {
		got, err := call(f, na, atB, 2*time.Second)
		if err == nil && got != "b 10.1.1.4" {
			return fmt.Errorf("got %q", got)
		}
		return err
	})
	const marker = "VPN-GATEWAY-MARKER-51c2"
	c, err := f.DialContext(ctx, na, "tcp4", echoAt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := echoLine(c, r, marker); err != nil {
		t.Fatal(err)
	}
	pkts, raw := watch()
	if len(pkts) == 0 {
		t.Fatal("the internet saw nothing")
	}
	for _, p := range pkts {
		if !gatewayIKEOrESP.MatchString(p) {
			t.Errorf("the internet saw a packet that is not IKE or ESP-in-UDP between the gateways: %s", p)
		}
	}
	if bytes.Contains(raw, []byte(marker)) {
		t.Error("the internet saw the payload in clear")
	}
	sts, err := f.VPNTunnelStates(ctx, ga.ID, ga.Dir)
	if err != nil || sts["ab"].BytesIn == 0 || sts["ab"].BytesOut == 0 {
		t.Errorf("counters after traffic: %+v, %v", sts, err)
	}

	// Removing the tunnel on a's side cuts the live session at once.
	ga.Tunnels = nil
	if err := f.EnsureVPNGateway(ctx, ga); err != nil {
		t.Fatal(err)
	}
	if err := echoLine(c, r, "after"); err == nil {
		t.Fatal("a live session survived the tunnel's removal")
	} else {
		t.Logf("live session after removal: %v (as wanted)", err)
	}
	mustNotConnect(t, f, na, atB)

	// A charon killed with SIGKILL: the next Ensure replaces it and loads
	// its tunnel again.
	pid := ipsec.New(gb.Dir, f.NamespaceName(KindVPNGateway, gb.ID), nil).PID()
	if pid == 0 {
		t.Fatal("no charon pid for gb")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ga.Tunnels = []VPNTunnel{tunnel("ab", "198.18.60.2", "10.2.0.0/16", "key-one")}
	testkit.WaitFor(t, 10*time.Second, "gb's charon replaced", func() error {
		return f.EnsureVPNGateway(ctx, gb)
	})
	if err := f.EnsureVPNGateway(ctx, ga); err != nil {
		t.Fatal(err)
	}
	waitTunnel(t, f, gb, "ba", ipsec.Connected)
	testkit.WaitFor(t, 20*time.Second, "a call through the tunnel again", func() error {
		_, err := call(f, na, atB, 2*time.Second)
		return err
	})
}

// TestVPNGatewaySite: a gateway's tunnel to a device that is not another
// gateway (an IPsec connection to a local network gateway: here an
// internet host running its own charon, with 192.168.0.0/16 behind it)
// carries the network's NICs to the site and back.
func TestVPNGatewaySite(t *testing.T) {
	testkit.RequireRoot(t, "it runs charon in network namespaces", "nsenter", "unshare")
	if err := ipsec.Available(); err != nil {
		t.Skip(err)
	}
	f := newTestFabric(t)
	ctx := context.Background()
	mustEnsureNetwork(t, f, "a", "10.1.1.0/24", "10.1.255.0/27")
	na := mustEnsureNIC(t, f, "na", "a", "10.1.1.4/24")
	atA := serve(t, f, na, "10.1.1.4:0", "a")
	site, err := f.EnsureInternetHost(netip.MustParseAddr("198.18.60.9"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "-n", site, "addr", "add", "192.168.1.1/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	atSite := serve(t, f, site, "192.168.1.1:0", "site")
	device := ipsec.New(t.TempDir(), site, nil)
	if err := device.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	ga := gatewaySpec(t, "ga", "a", "10.1.255.4/27", "10.1.0.0/16", "198.18.60.1", tunnel("site", "198.18.60.9", "192.168.0.0/16", "site-key"))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("tail", "-30", ga.Dir+"/charon.log").Output()
			t.Logf("gateway charon:\n%s", out)
		}
		if err := device.Stop(); err != nil {
			t.Error(err)
		}
		if err := f.DeleteVPNGateway(ga.ID, ga.Network, ga.Dir); err != nil {
			t.Error(err)
		}
	})
	if err := device.Load(ctx, ipsec.Conn{Name: "azure", LocalAddr: netip.MustParseAddr("198.18.60.9"), RemoteAddr: ga.Public,
		LocalTS: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}, RemoteTS: ga.Space, PSK: "site-key"}); err != nil {
		t.Fatal(err)
	}
	if err := f.EnsureVPNGateway(ctx, ga); err != nil {
		t.Fatal(err)
	}
	waitTunnel(t, f, ga, "site", ipsec.Connected)
	testkit.WaitFor(t, 20*time.Second, "a call from the network to the site", func() error {
		got, err := call(f, na, atSite, 2*time.Second)
		if err == nil && got != "site 10.1.1.4" {
			return fmt.Errorf("got %q", got)
		}
		return err
	})
	mustCall(t, f, site, atA, "a 192.168.1.1")
}
