package e2e

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// The test binary doubles as a tiny network tool that the tests run inside
// namespaces with `privlink exec`: set helperEnv to the mode.
const helperEnv = "PRIVLINK_E2E_HELPER"

// runHelper runs one helper mode and returns the exit status.
//
//	serve ADDR TEXT  accept connections on ADDR, answer each with TEXT
//	                 (prints "ready" once listening; runs until killed)
//	echo ADDR TEXT   as serve, then echo what each connection sends
//	dial ADDR        connect to ADDR within 3 s and print what it sends
//	whoami ADDR NAME accept connections on ADDR; each may start with a
//	                 PROXY protocol v2 header (parsed by pires/go-proxyproto)
//	                 before the client's first line, which it answers with
//	                 "NAME PEER HEADER" (HEADER "-", or "SRC DST LINKID"),
//	                 then it echoes (prints "ready"; runs until killed)
func runHelper(mode string, args []string) int {
	switch {
	case mode == "whoami" && len(args) == 2:
		return whoami(args[0], args[1])
	case (mode == "serve" || mode == "echo") && len(args) == 2:
		return listen(args[0], func(c net.Conn) {
			_, _ = io.WriteString(c, args[1]+"\n")
			if mode == "echo" {
				_, _ = io.Copy(c, c)
			}
		})
	case mode == "dial" && len(args) == 1:
		c, err := net.DialTimeout("tcp", args[0], 3*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Print(line)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q %q\n", mode, args)
	return 2
}

// listen accepts connections on addr and serves each with serve, which
// need not close it; it prints "ready" once listening.
func listen(addr string, serve func(net.Conn)) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close()
			serve(c)
		}()
	}
}

// whoami serves the helper mode of that name (see runHelper).
func whoami(addr, name string) int {
	return listen(addr, func(c net.Conn) {
		r := bufio.NewReader(c)
		header := "-"
		// A PROXY v2 header starts with "\r\n\r\n"; a client's line never
		// does.
		if b, err := r.Peek(1); err == nil && b[0] == '\r' {
			header = proxyHeader(r)
		}
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		peer, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		fmt.Fprintf(c, "%s %s %s\n", name, peer, header)
		_, _ = io.Copy(c, r)
	})
}

// proxyHeader parses a PROXY header from r: "SRC DST LINKID" (LINKID 0
// without Azure's TLV), or "error:..." when it is not one.
func proxyHeader(r *bufio.Reader) string {
	h, err := proxyproto.Read(r)
	if err != nil {
		return "error:" + strings.ReplaceAll(err.Error(), " ", "_")
	}
	src, dst, ok := h.TCPAddrs()
	if h.Version != 2 || !ok {
		return fmt.Sprintf("error:version_%d", h.Version)
	}
	tlvs, err := h.TLVs()
	if err != nil {
		return "error:tlvs"
	}
	var link uint32
	for _, tlv := range tlvs {
		if tlv.Type == 0xEE && len(tlv.Value) == 5 && tlv.Value[0] == 0x01 {
			link = binary.LittleEndian.Uint32(tlv.Value[1:])
		}
	}
	return fmt.Sprintf("%s %s %d", src, dst, link)
}
