package fabric

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// hostLinkTag starts the name of every internet-router-side veth toward an
// internet host; the rest is the host's address in hex (h c6120709).
const hostLinkTag = "h"

// EnsureInternet converges the emulated internet's router, the namespace
// NamespaceName(KindInternet, ""): IPv4 forwarding on and InternetGateway
// (198.18.0.1/32) on lo. Public addresses of servers are for the data path to
// add there later.
func (f *Fabric) EnsureInternet() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.ensureInternet()
	if err != nil {
		return err
	}
	r.close()
	return nil
}

func (f *Fabric) ensureInternet() (*nsRef, error) {
	name := f.NamespaceName(KindInternet, "")
	r, _, err := f.ensureNS(name, func() error {
		_, err := setSysctl("net/ipv4/ip_forward", "1")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fabric: internet: %w", err)
	}
	if err := ensureLoAddrs(r, map[string][]netip.Prefix{labelGateway: {netip.PrefixFrom(InternetGateway, 32)}}); err != nil {
		r.close()
		return nil, fmt.Errorf("fabric: internet: %w", err)
	}
	return r, nil
}

func checkInternetAddr(addr netip.Addr) error {
	if !addr.Is4() || !InternetPrefix.Contains(addr) || addr == InternetGateway ||
		addr == InternetPrefix.Addr() || addr == netip.MustParseAddr("198.19.255.255") {
		return fmt.Errorf("fabric: internet host %s: want a host address in %s other than %s: %w", addr, InternetPrefix, InternetGateway, ErrInvalid)
	}
	return nil
}

// EnsureInternetHost converges a host on the emulated internet with address
// addr (in 198.18.0.0/15): a namespace whose eth0 holds addr/32 with a
// default route to the internet router (198.18.0.1), and its veth peer in the
// internet router carrying the only route to addr. It converges the internet
// router too. It returns the host's namespace name, for
// `privlink exec --internet` and `ip netns exec`.
func (f *Fabric) EnsureInternetHost(addr netip.Addr) (nsName string, err error) {
	if err := checkInternetAddr(addr); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	name := f.InternetHostNamespace(addr)
	if err := f.ensureInternetHost(name, addr); err != nil {
		return "", fmt.Errorf("fabric: internet host %s: %w", addr, err)
	}
	return name, nil
}

func (f *Fabric) ensureInternetHost(name string, addr netip.Addr) error {
	inet, err := f.ensureInternet()
	if err != nil {
		return err
	}
	defer inet.close()
	host, _, err := f.ensureNS(name, nil)
	if err != nil {
		return err
	}
	defer host.close()
	a4 := addr.As4()
	linkName := fmt.Sprintf("%s%02x%02x%02x%02x", hostLinkTag, a4[0], a4[1], a4[2], a4[3])
	il, eth0, replaced, err := ensureVethPair(inet, linkName, host, nicLinkName, nil)
	if err != nil {
		return err
	}
	if replaced {
		f.log.Info("connected internet host", "address", addr, "ns", name, "router_link", linkName)
	}
	if err := ensureAlias(inet, il, "internet host "+addr.String()); err != nil {
		return err
	}
	if err := ensureUp(inet, il); err != nil {
		return err
	}
	if err := ensureHostRoute(inet, il, addr); err != nil {
		return err
	}
	if err := ensureAddrs(host, eth0, []netip.Prefix{netip.PrefixFrom(addr, 32)}, "", 0, allAddrs); err != nil {
		return err
	}
	if err := ensureUp(host, eth0); err != nil {
		return err
	}
	if err := ensureDefaultRoute(host, eth0, InternetGateway, true); err != nil {
		return err
	}
	// The internet's DNS (the public view) answers on the router's address.
	if err := writeResolvConf(name, "the emulated internet", InternetGateway); err != nil {
		return err
	}
	return waitLinks(f, inet, linkName, host, nicLinkName)
}

// DeleteInternetHost removes the internet host with address addr. Deleting
// one that does not exist is not an error.
func (f *Fabric) DeleteInternetHost(addr netip.Addr) error {
	if err := checkInternetAddr(addr); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.deleteNS(f.InternetHostNamespace(addr)); err != nil {
		return fmt.Errorf("fabric: delete internet host %s: %w", addr, err)
	}
	return nil
}

// DeleteInternet removes the internet router and every internet host.
func (f *Fabric) DeleteInternet() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	names, err := f.ListOwned()
	if err != nil {
		return err
	}
	hostPrefix := f.NamespaceName(KindInternetHost, "")
	var errs []error
	for _, name := range names {
		if strings.HasPrefix(name, hostPrefix) {
			errs = append(errs, f.deleteNS(name))
		}
	}
	errs = append(errs, f.deleteNS(f.NamespaceName(KindInternet, "")))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fabric: delete internet: %w", err)
	}
	return nil
}
