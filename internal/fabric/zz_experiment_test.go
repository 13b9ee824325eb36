package fabric

import (
	"io"
	"net"
	"os/exec"
	"testing"
	"time"
)

func BenchmarkZZExperiment(b *testing.B) {
	p := newBenchPath(b)
	router := p.f.NamespaceName(KindNetwork, "net1")
	// A second NIC with a sink, for plain forwarding.
	nic2 := mustEnsureNIC(b, p.f, "d", "net1", "10.0.1.9/16")
	ln, err := p.f.ListenTCP(nic2, "10.0.1.9:5432")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go benchServe(c)
		}
	}()
	measure := func(name, ns, addr string) {
		c := p.dial(b, ns, addr, 'b')
		defer c.Close()
		buf := make([]byte, 64<<10)
		ack := make([]byte, 1)
		start := time.Now()
		const n = 200
		for range n {
			for sent := 0; sent < benchChunk; sent += len(buf) {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := io.ReadFull(c, ack); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("%-30s %6.0f MB/s", name, float64(n*benchChunk)/time.Since(start).Seconds()/1e6)
	}
	_ = net.Dial
	for range 2 {
		measure("direct", p.svc, benchDirect)
		measure("endpoint", p.nic, benchEndpoint)
		measure("nic to nic", p.nic, "10.0.1.9:5432")
	}
	for _, ch := range []string{"unrouted", "svc-guard", "tickle-notrack"} {
		if out, err := exec.Command("ip", "netns", "exec", router, "nft", "delete", "chain", "inet", "privlink", ch).CombinedOutput(); err != nil {
			b.Fatalf("%v %s", err, out)
		}
	}
	measure("endpoint without guard/unrouted", p.nic, benchEndpoint)
	measure("nic to nic without", p.nic, "10.0.1.9:5432")
	measure("direct", p.svc, benchDirect)
	measure("endpoint without guard/unrouted", p.nic, benchEndpoint)
	b.SkipNow()
}
