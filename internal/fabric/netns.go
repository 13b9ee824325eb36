package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// netnsDir is where named namespaces are bind-mounted, as iproute2's
	// NETNS_RUN_DIR (/var/run is a link to /run).
	netnsDir = "/run/netns"
	// etcNetnsDir holds per-namespace files that `ip netns exec` bind-mounts
	// over /etc (resolv.conf).
	etcNetnsDir = "/etc/netns"
)

// netnsDirMu serialises the preparation of /run/netns within this process,
// so that concurrent New calls do not stack bind mounts on it.
var netnsDirMu sync.Mutex

// prepareNetnsDir creates /run/netns and makes it a shared mount, bind-mounting
// it on itself first if it is not a mount point, as `ip netns add` does; new
// namespace mounts then propagate into mount namespaces created later (such
// as the one `ip netns exec` makes).
func prepareNetnsDir() error {
	netnsDirMu.Lock()
	defer netnsDirMu.Unlock()
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	for bound := false; ; bound = true {
		err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) || bound {
			return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
		}
		// Not a mount point yet.
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s on itself: %w", netnsDir, err)
		}
	}
}

func nsPath(name string) string { return filepath.Join(netnsDir, name) }

// errStaleFile marks a /run/netns entry that is not a namespace mount (left by
// a crash between creating the file and mounting the namespace on it).
var errStaleFile = errors.New("not a network namespace mount")

// openNSFile opens the named namespace. It fails with ErrNotFound when there
// is no such entry and with errStaleFile when the entry is not a namespace.
func openNSFile(name string) (netns.NsHandle, error) {
	fd, err := unix.Open(nsPath(name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return netns.None(), fmt.Errorf("namespace %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return netns.None(), fmt.Errorf("open namespace %s: %w", name, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		unix.Close(fd)
		return netns.None(), fmt.Errorf("statfs namespace %s: %w", name, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		return netns.None(), fmt.Errorf("namespace %s: %w", name, errStaleFile)
	}
	return netns.NsHandle(fd), nil
}

// doIn runs fn on a fresh goroutine locked to its OS thread, with that thread
// switched into the namespace target, and switches it back before unlocking.
// If switching back fails the thread stays locked, so the runtime ends it
// with the goroutine instead of reusing a thread in the wrong namespace.
// Goroutines that fn starts do not run in target.
func doIn(target netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer origin.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(origin); err != nil {
			// Never unlock: the thread dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("return to original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Do runs fn inside the namespace nsName (which this Fabric must own) on a
// locked OS thread, and returns fn's error. Sockets that fn opens stay in the
// namespace after Do returns, so Do is how a server opens listeners there.
// fn must not rely on goroutines it starts being in the namespace (they are
// not), and must not resolve host names (Go's resolver may do so on other
// goroutines, that is in the host namespace).
func (f *Fabric) Do(nsName string, fn func() error) error {
	if !f.owns(nsName) {
		return fmt.Errorf("fabric: namespace %q does not start with prefix %q: %w", nsName, f.prefix, ErrInvalid)
	}
	fd, err := openNSFile(nsName)
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	defer fd.Close()
	if err := doIn(fd, fn); err != nil {
		return fmt.Errorf("fabric: in namespace %s: %w", nsName, err)
	}
	return nil
}

// ListenTCP opens a TCP listener on addr (such as "10.0.1.4:5432" or ":0")
// inside the namespace nsName.
func (f *Fabric) ListenTCP(nsName, addr string) (net.Listener, error) {
	var ln net.Listener
	err := f.Do(nsName, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// ListenUDP opens a UDP socket bound to addr (such as "168.63.129.16:53")
// inside the namespace nsName.
func (f *Fabric) ListenUDP(nsName, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := f.Do(nsName, func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	return pc, err
}

// DialContext connects from inside the namespace nsName to address, which
// must be an IP literal and port ("10.0.1.5:80"): names are never resolved,
// since Go's resolver would use the host namespace. network is "tcp", "tcp4",
// "udp" or "udp4".
func (f *Fabric) DialContext(ctx context.Context, nsName, network, address string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, fmt.Errorf("fabric: dial %s from %s: want an IP literal and port: %w", address, nsName, ErrInvalid)
	}
	var c net.Conn
	err := f.Do(nsName, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// nsRef is an open namespace: its file descriptor and a route netlink handle
// whose socket was opened inside it, usable from any goroutine.
type nsRef struct {
	name string
	fd   netns.NsHandle
	h    *netlink.Handle
}

func (r *nsRef) close() {
	if r.h != nil {
		r.h.Close()
	}
	if r.fd.IsOpen() {
		r.fd.Close()
	}
}

// do runs fn inside r's namespace (see doIn).
func (r *nsRef) do(fn func() error) error {
	if err := doIn(r.fd, fn); err != nil {
		return fmt.Errorf("in namespace %s: %w", r.name, err)
	}
	return nil
}

// open opens an existing namespace and its netlink handle, running inside
// (if not nil) in the namespace on the way.
func (f *Fabric) open(name string, inside func() error) (*nsRef, error) {
	fd, err := openNSFile(name)
	if err != nil {
		return nil, err
	}
	r := &nsRef{name: name, fd: fd}
	err = r.do(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("open netlink handle: %w", err)
		}
		r.h = h
		if inside != nil {
			return inside()
		}
		return nil
	})
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// baseSysctls converge the settings every namespace gets. IPv6 is off: the
// emulated networks are IPv4, and link-local IPv6 would be a second, unfiltered
// way between namespaces.
func baseSysctls() error {
	for _, k := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
		if _, err := setSysctl(k, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// ensureNS opens the namespace name, creating it when missing (or when its
// entry is a stale file), and converges its base settings and lo. inside, if
// not nil, runs inside the namespace (for sysctls). created tells whether the
// namespace is new.
func (f *Fabric) ensureNS(name string, inside func() error) (r *nsRef, created bool, err error) {
	in := func() error {
		if err := baseSysctls(); err != nil {
			return err
		}
		if inside != nil {
			return inside()
		}
		return nil
	}
	r, err = f.open(name, in)
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		r, err = f.createNS(name, in)
		created = true
	case errors.Is(err, errStaleFile):
		f.log.Warn("replacing stale namespace entry", "ns", name)
		if err := removeNSEntry(name); err != nil {
			return nil, false, err
		}
		r, err = f.createNS(name, in)
		created = true
	}
	if err != nil {
		return nil, false, err
	}
	if created {
		delete(f.forwarding, name) // see deleteNS
	}
	lo, err := r.h.LinkByName("lo")
	if err == nil && lo.Attrs().Flags&net.FlagUp == 0 {
		err = r.h.LinkSetUp(lo)
	}
	if err != nil {
		r.close()
		return nil, false, fmt.Errorf("namespace %s: set lo up: %w", name, err)
	}
	if created {
		f.log.Info("created namespace", "ns", name)
	}
	return r, created, nil
}

// createNS creates the named namespace as `ip netns add` does (a new
// namespace bind-mounted on /run/netns/NAME) on a locked thread that returns
// to its original namespace afterwards, and opens it.
func (f *Fabric) createNS(name string, inside func() error) (*nsRef, error) {
	path := nsPath(name)
	file, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	file.Close()

	type result struct {
		r   *nsRef
		err error
	}
	resc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			resc <- result{err: fmt.Errorf("get current namespace: %w", err)}
			return
		}
		defer origin.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			resc <- result{err: fmt.Errorf("unshare network namespace: %w", err)}
			return
		}
		r := &nsRef{name: name, fd: netns.None()}
		ferr := func() error {
			if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind-mount on %s: %w", path, err)
			}
			fd, err := netns.Get()
			if err != nil {
				return fmt.Errorf("get new namespace: %w", err)
			}
			r.fd = fd
			h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
			if err != nil {
				return fmt.Errorf("open netlink handle: %w", err)
			}
			r.h = h
			if inside != nil {
				return inside()
			}
			return nil
		}()
		if err := netns.Set(origin); err != nil {
			// Never unlock: the thread dies with this goroutine.
			resc <- result{r: r, err: errors.Join(ferr, fmt.Errorf("return to original namespace: %w", err))}
			return
		}
		runtime.UnlockOSThread()
		resc <- result{r: r, err: ferr}
	}()
	res := <-resc
	if res.err != nil {
		if res.r != nil {
			res.r.close()
		}
		return nil, errors.Join(fmt.Errorf("create namespace %s: %w", name, res.err), removeNSEntry(name))
	}
	return res.r, nil
}

// removeNSEntry unmounts and removes /run/netns/NAME. The namespace itself
// goes when nothing else refers to it.
func removeNSEntry(name string) error {
	path := nsPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// deleteNS removes the namespace name and its /etc/netns directory. It first
// deletes every link inside but lo, so that veth peers in other namespaces go
// at once even when a process still holds the namespace open (which would
// keep it, and its links, alive after the unmount).
func (f *Fabric) deleteNS(name string) error {
	f.watches.end(name)
	delete(f.forwarding, name) // a namespace made again under name starts anew
	r, err := f.open(name, nil)
	switch {
	case err == nil:
		links, lerr := linkList(r.h)
		if lerr != nil {
			err = fmt.Errorf("namespace %s: %w", name, lerr)
		}
		for _, l := range links {
			if l.Attrs().Flags&net.FlagLoopback != 0 {
				continue
			}
			if derr := r.h.LinkDel(l); derr != nil && !isNotExist(derr) {
				err = errors.Join(err, fmt.Errorf("namespace %s: delete link %s: %w", name, l.Attrs().Name, derr))
			}
		}
		r.close()
	case errors.Is(err, ErrNotFound), errors.Is(err, errStaleFile):
		err = nil
	}
	err = errors.Join(err, removeNSEntry(name))
	if rerr := os.RemoveAll(filepath.Join(etcNetnsDir, name)); rerr != nil {
		err = errors.Join(err, fmt.Errorf("remove %s: %w", filepath.Join(etcNetnsDir, name), rerr))
	}
	if err != nil {
		return err
	}
	f.log.Info("deleted namespace", "ns", name)
	return nil
}

// ListOwned returns the names of the namespaces this Fabric owns (those in
// /run/netns starting with its prefix), sorted.
func (f *Fabric) ListOwned() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return nil, fmt.Errorf("fabric: list %s: %w", netnsDir, err)
	}
	var names []string
	for _, e := range entries {
		if f.owns(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// RemoveStale deletes every namespace this Fabric owns for which keep returns
// false, with its /etc/netns directory, and /etc/netns directories of the
// prefix left without a namespace. A daemon calls it at start with the names
// its desired state still wants.
func (f *Fabric) RemoveStale(keep func(name string) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	names, err := f.ListOwned()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if keep(name) {
			continue
		}
		if err := f.deleteNS(name); err != nil {
			errs = append(errs, err)
		}
	}
	entries, err := os.ReadDir(etcNetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list %s: %w", etcNetnsDir, err))
	}
	for _, e := range entries {
		name := e.Name()
		if !f.owns(name) || keep(name) || slices.Contains(names, name) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(etcNetnsDir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fabric: remove stale namespaces: %w", err)
	}
	return nil
}

// setSysctl sets key (a path under /proc/sys such as "net/ipv4/ip_forward")
// to value in the calling thread's network namespace when it differs. It must
// run inside doIn. changed tells whether it wrote.
func setSysctl(key, value string) (changed bool, err error) {
	path := "/proc/sys/" + key
	cur, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("sysctl %s: %w", key, err)
	}
	if strings.TrimSpace(string(cur)) == value {
		return false, nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return false, fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return true, nil
}

// writeResolvConf makes `ip netns exec NAME` resolve through the DNS at
// server (whose network is named in a comment): it writes
// /etc/netns/NAME/resolv.conf when its content differs.
func writeResolvConf(name, network string, servers ...netip.Addr) error {
	dir := filepath.Join(etcNetnsDir, name)
	path := filepath.Join(dir, "resolv.conf")
	want := fmt.Sprintf("# Written by privlink: the DNS of %s.\n", network)
	for _, s := range servers {
		want += "nameserver " + s.String() + "\n"
	}
	if cur, err := os.ReadFile(path); err == nil && string(cur) == want {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	// Written in place, not renamed: `ip netns exec` bind-mounts every file
	// of the directory over /etc, so no temporary file may appear there. A
	// torn write is repaired by the next Ensure, which compares contents.
	if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
