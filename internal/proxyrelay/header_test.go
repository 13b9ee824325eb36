package proxyrelay

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// parseHeader reads a PROXY header with pires/go-proxyproto, an
// implementation independent of AppendHeader, and returns the source,
// destination and the LinkID of Azure's TLV (ok false when there is none).
func parseHeader(r *bufio.Reader) (src, dst netip.AddrPort, linkID uint32, ok bool, err error) {
	h, err := proxyproto.Read(r)
	if err != nil {
		return src, dst, 0, false, fmt.Errorf("parse PROXY header: %w", err)
	}
	if h.Version != 2 || h.Command != proxyproto.PROXY {
		return src, dst, 0, false, fmt.Errorf("header version %d command %v: want 2 and PROXY", h.Version, h.Command)
	}
	s, d, tcp := h.TCPAddrs()
	if !tcp {
		return src, dst, 0, false, fmt.Errorf("header transport %v: want TCP", h.TransportProtocol)
	}
	tlvs, err := h.TLVs()
	if err != nil {
		return src, dst, 0, false, fmt.Errorf("header TLVs: %w", err)
	}
	for _, tlv := range tlvs {
		if tlv.Type != TLVTypeAzure {
			continue
		}
		if len(tlv.Value) != 5 || tlv.Value[0] != TLVSubtypeAzureLinkID {
			return src, dst, 0, false, fmt.Errorf("azure TLV value %x: want subtype 01 and 4 bytes", tlv.Value)
		}
		linkID, ok = binary.LittleEndian.Uint32(tlv.Value[1:]), true
	}
	return s.AddrPort(), d.AddrPort(), linkID, ok, nil
}

func TestHeaderParses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.AddrPort
		linkID   uint32
		family   proxyproto.AddressFamilyAndProtocol
	}{
		{"ipv4", netip.MustParseAddrPort("10.0.1.4:50123"), netip.MustParseAddrPort("10.0.2.5:5432"), 0x12345678, proxyproto.TCPv4},
		{"ipv4 max link id", netip.MustParseAddrPort("192.168.0.1:1"), netip.MustParseAddrPort("10.0.2.5:65535"), 0xFFFFFFFF, proxyproto.TCPv4},
		{"ipv6", netip.MustParseAddrPort("[fd00::4]:40000"), netip.MustParseAddrPort("[fd00::2:5]:443"), 7, proxyproto.TCPv6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := AppendHeader(nil, tc.src, tc.dst, tc.linkID)
			if err != nil {
				t.Fatal(err)
			}
			payload := []byte("payload after the header")
			r := bufio.NewReader(bytes.NewReader(append(b, payload...)))
			src, dst, linkID, ok, err := parseHeader(r)
			if err != nil {
				t.Fatal(err)
			}
			if src != tc.src || dst != tc.dst {
				t.Errorf("addresses %s -> %s: want %s -> %s", src, dst, tc.src, tc.dst)
			}
			if !ok || linkID != tc.linkID {
				t.Errorf("LinkID %d (present %v): want %d", linkID, ok, tc.linkID)
			}
			rest := make([]byte, len(payload)+1)
			n, _ := r.Read(rest)
			if !bytes.Equal(rest[:n], payload) {
				t.Errorf("after the header %q: want %q", rest[:n], payload)
			}
		})
	}
}

// TestHeaderBytes pins the exact bytes for one IPv4 connection, laid out by
// hand from HAProxy's proxy-protocol.txt (section 2.2) and Azure's TLV
// (type 0xEE, length 5, subtype 0x01, LinkID little-endian).
func TestHeaderBytes(t *testing.T) {
	b, err := AppendHeader(nil, netip.MustParseAddrPort("10.0.1.4:1234"), netip.MustParseAddrPort("10.0.2.5:5432"), 0x01020304)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
		0x21,       // v2, PROXY
		0x11,       // AF_INET, STREAM
		0x00, 0x14, // 12 address bytes + 8 TLV bytes
		10, 0, 1, 4, 10, 0, 2, 5, // source, destination
		0x04, 0xD2, 0x15, 0x38, // ports 1234, 5432
		0xEE, 0x00, 0x05, 0x01, 0x04, 0x03, 0x02, 0x01, // Azure TLV
	}
	if !bytes.Equal(b, want) {
		t.Errorf("header\n%x\nwant\n%x", b, want)
	}
}

func TestHeaderRefusesMixedFamilies(t *testing.T) {
	if _, err := AppendHeader(nil, netip.MustParseAddrPort("10.0.1.4:1"), netip.MustParseAddrPort("[fd00::1]:2"), 1); err == nil {
		t.Error("IPv4 source with IPv6 destination: no error")
	}
	// An IPv4-mapped IPv6 address (a dual-stack listener's view) is IPv4.
	b, err := AppendHeader(nil, netip.MustParseAddrPort("[::ffff:10.0.1.4]:1"), netip.MustParseAddrPort("10.0.2.5:2"), 1)
	if err != nil || b[13] != famTCP4 {
		t.Errorf("mapped IPv4: family %x, err %v: want %x", b[13], err, famTCP4)
	}
}
