package fabric

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// labelService marks the service address on lo of a service namespace.
const labelService = "lo:svc"

// ServiceSpec is the desired state of a service instance's namespace (one
// PostgreSQL server).
type ServiceSpec struct {
	// ID is the service's stable short key (1-64 of [A-Za-z0-9_.-]); the
	// namespace is NamespaceName(KindService, ID).
	ID string
	// Address is the service's address with its length, inside
	// 169.254.0.0/16 (169.254.10.2/30).
	Address netip.Prefix
}

func (s ServiceSpec) validate() error {
	if err := checkID("service", s.ID); err != nil {
		return err
	}
	a := s.Address
	if !a.IsValid() || !a.Addr().Is4() || a.Bits() < ServicePrefix.Bits() || !ServicePrefix.Contains(a.Addr()) {
		return fmt.Errorf("fabric: service %s: address %s: want an address inside %s: %w", s.ID, a, ServicePrefix, ErrInvalid)
	}
	return nil
}

// EnsureService converges a service namespace: IPv4 forwarding off, lo up,
// holding exactly spec.Address (with its length but without a prefix route,
// so only the address itself is local; label lo:svc). EnsureService links
// the namespace to nothing: EnsureEndpoints and EnsurePublic connect routers
// to it (service links) and translate approved flows toward spec.Address.
func (f *Fabric) EnsureService(spec ServiceSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	name := f.NamespaceName(KindService, spec.ID)
	// The data path links a service to several routers (one per network
	// with an endpoint to it, and the internet's); it must never forward
	// between them, whatever the host's defaults new namespaces inherit.
	r, _, err := f.ensureNS(name, func() error {
		_, err := setSysctl("net/ipv4/ip_forward", "0")
		return err
	})
	if err != nil {
		return fmt.Errorf("fabric: service %s: %w", spec.ID, err)
	}
	defer r.close()
	lo, err := linkByName(r, "lo")
	if err == nil && lo == nil {
		err = fmt.Errorf("namespace %s: no lo", name)
	}
	if err == nil {
		// A dummy interface would do as well, but not every kernel has the
		// driver (this machine kind's does not); lo always exists.
		owned := func(a netlink.Addr) bool { return a.Label == labelService }
		err = ensureAddrs(r, lo, []netip.Prefix{spec.Address}, labelService, unix.IFA_F_NOPREFIXROUTE, owned)
	}
	if err != nil {
		return fmt.Errorf("fabric: service %s: %w", spec.ID, err)
	}
	f.log.Debug("service converged", "service", spec.ID, "ns", name, "address", spec.Address)
	return nil
}

// DeleteService removes a service namespace. Deleting one that does not
// exist is not an error.
func (f *Fabric) DeleteService(id string) error {
	if err := checkID("service", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.deleteNS(f.NamespaceName(KindService, id)); err != nil {
		return fmt.Errorf("fabric: delete service %s: %w", id, err)
	}
	return nil
}
