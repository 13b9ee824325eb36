package proxyrelay

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The PROXY protocol version 2 header (HAProxy's proxy-protocol.txt, section
// 2.2), as Azure's private link services send it with TCP Proxy v2 enabled:
// command PROXY, TCP over IPv4 or IPv6, and one TLV of Azure's type.
const (
	// cmdProxy is version 2 (high nibble) and command PROXY (low nibble);
	// cmdLocal is version 2 and command LOCAL (no client: health checks).
	cmdProxy = 0x21
	cmdLocal = 0x20
	// famTCP4 and famTCP6 are AF_INET or AF_INET6 (high nibble) with
	// SOCK_STREAM (low nibble).
	famTCP4 = 0x11
	famTCP6 = 0x21

	// TLVTypeAzure is PP2_TYPE_AZURE, the custom TLV type Azure uses.
	TLVTypeAzure = 0xEE
	// TLVSubtypeAzureLinkID is PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID: the
	// first byte of a PP2_TYPE_AZURE value, followed by the private
	// endpoint's LinkID as a 32-bit little-endian integer.
	TLVSubtypeAzureLinkID = 0x01

	// azureTLVLen is the TLV's type, length and value (subtype + uint32).
	azureTLVLen = 1 + 2 + 1 + 4
	// maxHeaderLen is the longest header AppendHeader writes (IPv6).
	maxHeaderLen = len(signature) + 4 + 36 + azureTLVLen
)

// signature starts every version 2 header.
var signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// AppendLocalHeader appends to b the PROXY protocol v2 header of a
// connection the proxy makes on its own behalf, as a health probe:
// command LOCAL, family AF_UNSPEC, no addresses (the receiver uses the
// connection's own), and returns the extended slice.
func AppendLocalHeader(b []byte) []byte {
	b = append(b, signature[:]...)
	return append(b, cmdLocal, 0x00, 0x00, 0x00)
}

// AppendHeader appends to b the PROXY protocol v2 header of a TCP connection
// from src to dst (both IPv4 or both IPv6; IPv4-mapped IPv6 addresses count
// as IPv4) carrying linkID in Azure's TLV, and returns the extended slice.
func AppendHeader(b []byte, src, dst netip.AddrPort, linkID uint32) ([]byte, error) {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	if !sa.IsValid() || !da.IsValid() || sa.Is4() != da.Is4() {
		return b, fmt.Errorf("proxy header: source %s and destination %s: want two addresses of one family", src, dst)
	}
	fam, addrLen := byte(famTCP4), 12
	if !sa.Is4() {
		fam, addrLen = famTCP6, 36
	}
	b = append(b, signature[:]...)
	b = append(b, cmdProxy, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(addrLen+azureTLVLen))
	b = append(b, sa.AsSlice()...)
	b = append(b, da.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	b = append(b, TLVTypeAzure)
	b = binary.BigEndian.AppendUint16(b, 1+4)
	b = append(b, TLVSubtypeAzureLinkID)
	b = binary.LittleEndian.AppendUint32(b, linkID)
	return b, nil
}
