package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Sockets for userspace relays (internal/proxyrelay): a relay listens in one
// namespace (ListenTCP) and connects onward from another, from a chosen
// source address, and learns the destination a consumer dialled before the
// kernel translated it.

// DialTCPFrom connects from inside the namespace nsName (which this Fabric
// must own; "" is the calling process's own namespace) to dst, binding the
// socket to src first when src is valid. The bind sets IP_FREEBIND, so src
// need not be an address of the namespace (a NAT address that the
// namespace's routes and translations answer for); replies to src must still
// reach this namespace. The connection outlives the call and may be used
// from any goroutine.
func (f *Fabric) DialTCPFrom(ctx context.Context, nsName string, src netip.Addr, dst netip.AddrPort) (*net.TCPConn, error) {
	if !dst.IsValid() || (src.IsValid() && src.Is4() != dst.Addr().Unmap().Is4()) {
		return nil, fmt.Errorf("fabric: dial %s from %s in %q: want a destination and a source of the same family: %w", dst, src, nsName, ErrInvalid)
	}
	d := net.Dialer{}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set IP_FREEBIND: %w", serr)
			}
			return nil
		}
	}
	dial := func() (*net.TCPConn, error) {
		c, err := d.DialContext(ctx, "tcp", dst.String())
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	if nsName == "" {
		c, err := dial()
		if err != nil {
			return nil, fmt.Errorf("fabric: dial %s: %w", dst, err)
		}
		return c, nil
	}
	var c *net.TCPConn
	err := f.Do(nsName, func() error {
		var err error
		c, err = dial()
		return err
	})
	return c, err
}

// OriginalDestination returns the destination that the peer of c (an
// accepted IPv4 connection) dialled before the kernel's NAT rewrote it, as
// conntrack recorded it (SO_ORIGINAL_DST). ok is false when conntrack does
// not know the connection (no NAT in its path, or conntrack not loaded in
// the namespace): then c.LocalAddr() is the destination.
func OriginalDestination(c *net.TCPConn) (dst netip.AddrPort, ok bool, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false, fmt.Errorf("fabric: original destination: %w", err)
	}
	if la, _ := c.LocalAddr().(*net.TCPAddr); la == nil || la.IP.To4() == nil {
		return netip.AddrPort{}, false, nil
	}
	var mreq *unix.IPv6Mreq
	var serr error
	if err := rc.Control(func(fd uintptr) {
		// SO_ORIGINAL_DST returns a sockaddr_in; IPv6Mreq is the 20-byte
		// buffer x/sys offers for such getsockopt calls.
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
	}); err != nil {
		return netip.AddrPort{}, false, fmt.Errorf("fabric: original destination: %w", err)
	}
	if errors.Is(serr, unix.ENOENT) || errors.Is(serr, unix.ENOPROTOOPT) {
		return netip.AddrPort{}, false, nil
	}
	if serr != nil {
		return netip.AddrPort{}, false, fmt.Errorf("fabric: original destination: %w", serr)
	}
	// struct sockaddr_in: family (2 bytes), port (big-endian), address.
	b := mreq.Multiaddr
	port := uint16(b[2])<<8 | uint16(b[3])
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), port), true, nil
}
