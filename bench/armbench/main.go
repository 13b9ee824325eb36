// Command armbench measures privlinkd's ARM API through the official Azure
// SDK for Go: GET and PUT of a virtual network with subnets, and the token
// endpoint's issue rate, each against a baseline measured in the same run
// on the same server (GET /healthz over the same TLS connection pool: the
// cost of HTTPS alone).
//
//	go build -o /tmp/pl/ ./cmd/privlinkd && go run ./bench/armbench --privlinkd /tmp/pl/privlinkd --store bolt
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/store/etcd/etcdtest"
)

func main() {
	bin := flag.String("privlinkd", "", "path to a privlinkd binary")
	backend := flag.String("store", "bolt", "bolt or etcd (a private etcd is started)")
	conc := flag.Int("c", 8, "concurrent clients")
	n := flag.Int("n", 2000, "requests per measurement")
	flag.Parse()
	if *bin == "" {
		log.Fatal("--privlinkd is required")
	}
	dir, err := os.MkdirTemp("", "armbench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	args := []string{"--data-dir", filepath.Join(dir, "data"), "--listen", freeAddr(), "--netns-prefix", "pbench-", "--log-level", "warn"}
	if *backend == "etcd" {
		ep, stop, err := etcdtest.Launch(dir)
		if err != nil {
			log.Fatal(err)
		}
		defer stop()
		args = append(args, "--store", "etcd", "--etcd-endpoints", ep)
	}
	cmd := exec.Command(*bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()

	cfg := waitReady(filepath.Join(dir, "data", "credentials.json"))
	ctx := context.Background()
	sub := cfg.Creds.SubscriptionID
	rgs, _ := armresources.NewResourceGroupsClient(sub, cfg.Credential, cfg.ClientOptions())
	if _, err := rgs.CreateOrUpdate(ctx, "bench", armresources.ResourceGroup{Location: ptr("westeurope")}, nil); err != nil {
		log.Fatal(err)
	}
	vnets, _ := armnetwork.NewVirtualNetworksClient(sub, cfg.Credential, cfg.ClientOptions())
	vnet := func(tag string) armnetwork.VirtualNetwork {
		v := armnetwork.VirtualNetwork{Location: ptr("westeurope"), Tags: map[string]*string{"run": &tag},
			Properties: &armnetwork.VirtualNetworkPropertiesFormat{AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{ptr("10.0.0.0/16")}}}}
		for i := range 4 {
			v.Properties.Subnets = append(v.Properties.Subnets, &armnetwork.Subnet{Name: ptr(fmt.Sprintf("s%d", i)),
				Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr(fmt.Sprintf("10.0.%d.0/24", i))}})
		}
		return v
	}
	put := func(tag string) error {
		p, err := vnets.BeginCreateOrUpdate(ctx, "bench", "vnet", vnet(tag), nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(ctx, &azruntime.PollUntilDoneOptions{Frequency: time.Second})
		return err
	}
	if err := put("0"); err != nil {
		log.Fatal(err)
	}

	health := func(int) error {
		resp, err := cfg.HTTPClient.Get(cfg.Creds.ARMEndpoint + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	tokenURL := strings.TrimSuffix(cfg.Creds.AuthorityHost, "/") + "/" + cfg.Creds.TenantID + "/oauth2/v2.0/token"
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {cfg.Creds.ClientID},
		"client_secret": {cfg.Creds.ClientSecret}, "scope": {cfg.Scope()}}.Encode()
	token := func(int) error {
		resp, err := cfg.HTTPClient.Post(tokenURL, "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("token: %s", resp.Status)
		}
		return nil
	}
	get := func(int) error { _, err := vnets.Get(ctx, "bench", "vnet", nil); return err }
	putN := func(i int) error { return put(fmt.Sprint(i)) }

	fmt.Printf("store=%s clients=%d requests=%d\n\n", *backend, *conc, *n)
	fmt.Println("| measurement | req/s | p50 | p99 | ratio to /healthz |")
	fmt.Println("|---|---|---|---|---|")
	base := measure("GET /healthz (baseline)", *conc, *n, health, 0)
	measure("token issue (POST token endpoint)", *conc, *n, token, base)
	measure("SDK VirtualNetworks.Get (4 subnets)", *conc, *n, get, base)
	measure("SDK VirtualNetworks.BeginCreateOrUpdate+PollUntilDone", *conc, *n/4, putN, base)
}

// measure runs f n times from conc goroutines and prints one table row.
func measure(name string, conc, n int, f func(int) error, base float64) float64 {
	var mu sync.Mutex
	lat := make([]time.Duration, 0, n)
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				if err := f(i); err != nil {
					log.Fatalf("%s: %v", name, err)
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	rps := float64(n) / time.Since(start).Seconds()
	slices.Sort(lat)
	ratio := "1.00"
	if base > 0 {
		ratio = fmt.Sprintf("%.2f", rps/base)
	}
	fmt.Printf("| %s | %.0f | %s | %s | %s |\n", name, rps, round(lat[len(lat)/2]), round(lat[len(lat)*99/100]), ratio)
	return rps
}

func round(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }

func waitReady(credsPath string) *azconfig.Config {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := azconfig.Load(credsPath); err == nil {
			if cfg, err := azconfig.New(c); err == nil {
				if resp, err := cfg.HTTPClient.Get(c.ARMEndpoint + "/healthz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return cfg
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatal("privlinkd did not become ready within 60s")
	return nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func ptr[T any](v T) *T { return &v }
