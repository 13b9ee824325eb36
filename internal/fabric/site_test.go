package fabric

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func siteSpec(name, space, public string, hosts ...string) SiteSpec {
	s := SiteSpec{Name: name, Space: netip.MustParsePrefix(space), Public: netip.MustParseAddr(public)}
	a := SiteDeviceAddr(s.Space)
	for _, h := range hosts {
		a = a.Next()
		s.Hosts = append(s.Hosts, SiteHost{Name: h, Address: a})
	}
	return s
}

// TestSite: a site's hosts reach each other, their router and the device
// through the router; the device holds the public address on the internet
// and an internet host reaches it, but nothing inside the site; an Ensure
// converges a host removed from the spec and a namespace deleted by hand;
// DeleteSite removes every namespace, the device's internet link too.
func TestSite(t *testing.T) {
	f := newTestFabric(t)
	spec := siteSpec("office", "192.168.0.0/16", "198.18.50.1", "h1", "h2", "h3")
	if err := f.EnsureSite(spec); err != nil {
		t.Fatal(err)
	}
	h1, h2 := f.SiteHostNamespace("office", "h1"), f.SiteHostNamespace("office", "h2")
	dev, router := f.SiteDeviceNamespace("office"), f.SiteRouterNamespace("office")
	addr2 := serve(t, f, h2, "192.168.0.4:0", "h2")
	mustCall(t, f, h1, addr2, "h2 192.168.0.3")
	devSrv := serve(t, f, dev, "192.168.0.2:0", "device")
	mustCall(t, f, h1, devSrv, "device 192.168.0.3")
	// The device's public address from the internet; the site's space not.
	inet, err := f.EnsureInternetHost(netip.MustParseAddr("198.18.7.9"))
	if err != nil {
		t.Fatal(err)
	}
	pub := serve(t, f, dev, "198.18.50.1:0", "public")
	mustCall(t, f, inet, pub, "public 198.18.7.9")
	// The data path's convergence of the internet router leaves the
	// device's link alone (it owns the links whose names start with "s").
	mustEnsurePublic(t, f)
	mustCall(t, f, inet, pub, "public 198.18.7.9")
	mustNotConnect(t, f, inet, addr2)
	// A site host reaches the internet as the device's public address, as
	// an office's hosts do.
	inetSrv := serve(t, f, inet, "198.18.7.9:0", "internet")
	mustCall(t, f, h1, inetSrv, "internet 198.18.50.1")
	b, err := os.ReadFile(filepath.Join(etcNetnsDir, h1, "resolv.conf"))
	if err != nil || !strings.Contains(string(b), "nameserver 192.168.0.1\n") {
		t.Fatalf("resolv.conf of %s: %q, %v", h1, b, err)
	}

	// Idempotent: a second Ensure changes nothing, and takes no route
	// away even for a moment (the site's traffic would black-hole).
	before := nsState(t, f, router)
	var monitors []*exec.Cmd
	var outs []*bytes.Buffer
	for _, ns := range []string{router, dev, h1} {
		cmd := exec.Command("ip", "-n", ns, "monitor", "route")
		var b bytes.Buffer
		cmd.Stdout = &b
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		monitors, outs = append(monitors, cmd), append(outs, &b)
	}
	time.Sleep(200 * time.Millisecond) // the monitors subscribe
	if err := f.EnsureSite(spec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	for i, cmd := range monitors {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if got := outs[i].String(); got != "" {
			t.Errorf("a second Ensure changed routes in %s:\n%s", cmd.Args[2], got)
		}
	}
	if after := nsState(t, f, router); after != before {
		t.Fatalf("second Ensure changed the router:\n%s\n---\n%s", before, after)
	}
	// A host leaves the spec; a host namespace deleted by hand comes back.
	spec.Hosts = spec.Hosts[:2]
	if err := f.deleteNS(h2); err != nil {
		t.Fatal(err)
	}
	if err := f.EnsureSite(spec); err != nil {
		t.Fatal(err)
	}
	hosts, err := f.siteHosts("office")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{h1, h2}; !slices.Equal(hosts, want) {
		t.Fatalf("hosts %v, want %v", hosts, want)
	}
	addr2 = serve(t, f, h2, "192.168.0.4:0", "h2")
	mustCall(t, f, h1, addr2, "h2 192.168.0.3")
	if sites, err := f.Sites(); err != nil || !slices.Equal(sites, []string{"office"}) {
		t.Fatalf("Sites() = %v, %v", sites, err)
	}

	if err := f.DeleteSite("office"); err != nil {
		t.Fatal(err)
	}
	if sites, err := f.Sites(); err != nil || len(sites) != 0 {
		t.Fatalf("after delete, Sites() = %v, %v", sites, err)
	}
	mustNotConnect(t, f, inet, pub)
	ir, err := f.open(f.NamespaceName(KindInternet, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ir.close()
	if l, err := linkByName(ir, "dc6123201"); err != nil || l != nil {
		t.Fatalf("the device's internet link after delete: %v, %v", l, err)
	}
	if err := f.DeleteSite("office"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestSiteSpecInvalid(t *testing.T) {
	f := newTestFabric(t)
	for name, mut := range map[string]func(*SiteSpec){
		"bad name":          func(s *SiteSpec) { s.Name = "Office_1" },
		"space in internet": func(s *SiteSpec) { s.Space = netip.MustParsePrefix("198.18.0.0/16") },
		"space too small":   func(s *SiteSpec) { s.Space = netip.MustParsePrefix("192.168.0.0/30") },
		"public outside":    func(s *SiteSpec) { s.Public = netip.MustParseAddr("8.8.8.8") },
		"host on router":    func(s *SiteSpec) { s.Hosts[0].Address = netip.MustParseAddr("192.168.0.1") },
		"host outside":      func(s *SiteSpec) { s.Hosts[0].Address = netip.MustParseAddr("10.0.0.5") },
		"host broadcast":    func(s *SiteSpec) { s.Hosts[0].Address = netip.MustParseAddr("192.168.255.255") },
		"two of a name":     func(s *SiteSpec) { s.Hosts[1].Name = s.Hosts[0].Name },
	} {
		s := siteSpec("office", "192.168.0.0/16", "198.18.50.1", "h1", "h2")
		mut(&s)
		if err := f.EnsureSite(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if names, _ := f.ListOwned(); len(names) != 0 {
		t.Fatalf("invalid specs left namespaces: %v", names)
	}
}
