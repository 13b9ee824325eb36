package controller

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// TestProbeProxyHeader: with proxy set (a private link service with
// enableProxyProtocol uses the load balancer), Tcp and Http probes start
// with a PROXY v2 header that a real parser reads as LOCAL (no client, as
// Azure's probes); without it, the first bytes are the probe's own. The
// backend is one that requires the header when it is on, so a probe
// without it would fail there.
func TestProbeProxyHeader(t *testing.T) {
	for _, tc := range []struct {
		proto string
		proxy bool
	}{{"Tcp", true}, {"Http", true}, {"Tcp", false}, {"Http", false}} {
		t.Run(fmt.Sprintf("%s/proxy=%v", tc.proto, tc.proxy), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			seen := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					seen <- "accept: " + err.Error()
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				what := "no header"
				if tc.proxy {
					h, err := proxyproto.Read(r)
					if err != nil {
						seen <- "header: " + err.Error()
						return
					}
					what = fmt.Sprintf("v%d local=%v", h.Version, h.Command.IsLocal())
				}
				if tc.proto == "Tcp" {
					rest, _ := io.ReadAll(r)
					seen <- fmt.Sprintf("%s rest=%q", what, rest)
					return
				}
				line, _ := r.ReadString('\n')
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				seen <- fmt.Sprintf("%s first=%q", what, strings.TrimSpace(line))
			}()
			addr := ln.Addr().(*net.TCPAddr).AddrPort()
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			pt := probeTarget{proto: tc.proto, addr: netip.AddrPortFrom(addr.Addr(), addr.Port()), path: "/health", interval: time.Second, proxy: tc.proxy}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = probeOver(ctx, c, pt)
			c.Close()
			if err != nil {
				t.Fatalf("probe: %v", err)
			}
			var got string
			select {
			case got = <-seen:
			case <-time.After(30 * time.Second):
				t.Fatal("the backend saw no probe")
			}
			want := map[string]string{
				"Tcp/true": `v2 local=true rest=""`, "Http/true": `v2 local=true first="GET /health HTTP/1.1"`,
				"Tcp/false": `no header rest=""`, "Http/false": `no header first="GET /health HTTP/1.1"`,
			}[fmt.Sprintf("%s/%v", tc.proto, tc.proxy)]
			if got != want {
				t.Errorf("backend saw %s, want %s", got, want)
			}
		})
	}
}
