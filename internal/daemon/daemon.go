// Package daemon wires privlinkd's parts together: the store, the CA and
// TLS, the identity service, the ARM router with its providers, and the
// HTTPS listener. Run blocks until its context ends, then shuts down.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/datapath"
	"github.com/privlink/privlink/internal/dns"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/names"
	"github.com/privlink/privlink/internal/pgserver"
	"github.com/privlink/privlink/internal/pki"
	"github.com/privlink/privlink/internal/portal"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/proxyrelay"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
	"github.com/privlink/privlink/internal/store/etcd"
)

// Audience is the ARM audience of privlink's tokens: what clients put in
// cloud.Configuration's ResourceManager Audience.
const Audience = "https://management.privlink.local"

// Config is privlinkd's configuration, from its flags.
type Config struct {
	DataDir     string // --data-dir
	Listen      string // --listen host:port
	NetnsPrefix string // --netns-prefix
	Store       string // --store: "bolt" or "etcd"
	// EtcdEndpoints and EtcdPrefix select the etcd cluster and the key
	// prefix this daemon's state lives under (--store etcd).
	EtcdEndpoints []string
	EtcdPrefix    string
	Logger        *slog.Logger
}

// Files in the data directory.
const (
	CredentialsFile = "credentials.json"
	CAFile          = "ca.pem"
	storeFile       = "privlink.db"
)

// Run starts privlinkd and serves until ctx ends. It returns nil after a
// clean shutdown.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	ca, err := pki.LoadOrCreateCA(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	raw, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer raw.Close()
	// Role assignments go with the scope they hang off, in the
	// transaction that deletes it, whoever deletes it.
	st := ScopedStore(raw)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another privlinkd running? choose another --listen)", cfg.Listen, err)
	}
	defer ln.Close()
	base := "https://" + advertised(ln.Addr().(*net.TCPAddr), cfg.Listen)

	ids, err := identity.New(ctx, st, identity.Config{BaseURL: base, Audience: Audience, Logger: log.With("component", "identity")})
	if err != nil {
		return err
	}
	caPath := filepath.Join(cfg.DataDir, CAFile)
	if err := bootstrap(ctx, ids, cfg.DataDir, caPath, base, log); err != nil {
		return err
	}
	if err := pruneRoleAssignments(ctx, ids, log); err != nil {
		return err
	}

	// The fabric needs root. Without it privlinkd still serves the whole
	// control plane, and says that nothing is materialized.
	fab, err := fabric.New(cfg.NetnsPrefix, log.With("component", "fabric"))
	if err != nil {
		if os.Geteuid() == 0 {
			return fmt.Errorf("network fabric: %w", err)
		}
		log.Warn("not running as root: virtual networks are recorded but not materialized (no namespaces, no DNS); run privlinkd as root", "err", err)
		fab = nil
	}
	var opts APIOptions
	var pgm *pgserver.Manager
	var vpn *controller.VPN
	if fab != nil {
		vpn = controller.NewVPN(st, fab, cfg.DataDir, log.With("component", "vpn"))
		opts.Network = append(opts.Network, network.WithMaterializedNICs(), network.WithVPNStatus(vpn))
		pgm, err = pgserver.NewManager(pgserver.Config{DataDir: cfg.DataDir, CA: ca, Fabric: fab, Log: log,
			EntraKeys: ids.JWKS(), EntraIssuer: ids.Issuer})
		if err != nil {
			return fmt.Errorf("PostgreSQL servers: %w", err)
		}
		if len(pgm.Versions()) == 0 {
			log.Warn("no PostgreSQL is installed: flexible servers cannot be created; apt-get install postgresql-15")
		}
		opts.Postgres = append(opts.Postgres, postgres.WithController(), postgres.WithVersions(pgm.Versions()), postgres.WithUpgradeTargets(pgm.UpgradeTargets()), postgres.WithEntraVersions(pgm.EntraVersions()))
	}
	router := NewAPI(st, ids, log.With("component", "arm"), opts)

	// Controllers make the world match the store until ctx ends.
	var wg sync.WaitGroup
	defer wg.Wait()
	cctx, stopControllers := context.WithCancel(ctx)
	defer stopControllers()
	run := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(cctx); err != nil && cctx.Err() == nil {
				log.Error("controller stopped", "controller", name, "err", err)
			}
		}()
	}
	run("dns-registration", controller.NewRegistration(st, log.With("component", "dns-registration")).Run)
	zoneGroups := controller.NewZoneGroups(st, log.With("component", "dns-zone-groups"))
	var paths *datapath.Observed // what the data path programmed
	var relay *proxyrelay.Relay  // the PROXY protocol relay
	if fab != nil {
		catalog := dns.NewCatalog()
		dnsServer := dns.NewServer(catalog, log.With("component", "dns"))
		run("dns-catalog", controller.NewDNSCatalog(st, catalog, log.With("component", "dns-catalog")).Run)
		dp := controller.NewDatapath(st, fab, pgm, log.With("component", "datapath"))
		paths = dp.Observed()
		relay = dp.Relay()
		network := controller.NewNetwork(st, fab, dnsServer, log.With("component", "network"))
		// An endpoint's operation finishes, and a name resolves to it,
		// once its translation is there.
		network.FollowDatapath(paths)
		zoneGroups.FollowDatapath(paths)
		run("network", network.Run)
		run("postgres", controller.NewPostgres(st, fab, pgm, log.With("component", "postgres")).Run)
		run("datapath", dp.Run)
		run("policy", controller.NewPolicy(st, fab, log.With("component", "policy")).Run)
		run("internet-hosts", controller.NewInternetHosts(st, fab, log.With("component", "internet-hosts")).Run)
		run("loadbalancers", controller.NewLoadBalancers(st, fab, log.With("component", "loadbalancers")).Run)
		run("vpn", vpn.Run)
		run("sites", controller.NewSites(st, fab, dnsServer, filepath.Join(cfg.DataDir, "sites"), log.With("component", "sites")).Run)
	}
	run("dns-zone-groups", zoneGroups.Run)
	metrics, audit := newTelemetry(fab, paths, log)
	if audit != nil {
		// Relayed connections are told by the relay, not conntrack.
		relay.Observe(audit.Relayed)
		run("audit", audit.Run)
	}
	if err := names.WriteRuntime(cfg.DataDir, names.Runtime{NetnsPrefix: cfg.NetnsPrefix, ARMEndpoint: base, PID: os.Getpid()}); err != nil {
		return err
	}

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", metricsHandler(ids, metrics))
	mux.Handle("GET /metadata/endpoints", metadataHandler(base, Audience))
	mux.Handle("/subscriptions/", router)
	mux.Handle("/subscriptions", router)
	mux.Handle("POST /privlink/v1/principals", adminOnly(ids, principalsHandler(ids, caPath)))
	mux.Handle("POST /privlink/v1/internet-hosts", adminOnly(ids, internetHostsHandler(fab, st)))
	registerSites(mux, ids, fab, st)
	mux.Handle("POST "+postgres.PrivateDNSZoneSuffixPath, authenticated(ids, http.HandlerFunc(postgres.ServePrivateDNSZoneSuffix)))
	mux.Handle("/", ids.Handler())
	// The web portal: pages made of ARM requests, sent with the signed-in
	// principal's token to this same mux (in process), so the API's RBAC
	// decides what it shows and does. It is not an ARM type.
	web, err := portal.New(portal.Config{API: mux, Audience: Audience, Logger: log.With("component", "portal")})
	if err != nil {
		return err
	}
	mux.Handle(portal.Prefix+"/", web)
	mux.Handle(portal.Prefix, web)

	host, _, _ := net.SplitHostPort(strings.TrimPrefix(base, "https://"))
	cert, err := ca.TLSCertificate([]string{"localhost", host}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	if err != nil {
		return fmt.Errorf("issue the API's TLS certificate: %w", err)
	}
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	go pruneOperations(ctx, st, log)
	ready.Store(true)
	log.Info("privlinkd ready", "api", base, "data_dir", cfg.DataDir, "store", storeName(cfg),
		"credentials", filepath.Join(cfg.DataDir, CredentialsFile))

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("privlinkd shutting down")
	ready.Store(false)
	stopControllers()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func storeName(cfg Config) string {
	if cfg.Store == "" {
		return "bolt"
	}
	return cfg.Store
}

func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	switch storeName(cfg) {
	case "bolt":
		st, err := bolt.Open(filepath.Join(cfg.DataDir, storeFile))
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	case "etcd":
		if len(cfg.EtcdEndpoints) == 0 {
			return nil, errors.New("--store etcd needs --etcd-endpoints URL[,URL...]")
		}
		st, err := etcd.New(ctx, etcd.Config{Endpoints: cfg.EtcdEndpoints, Prefix: cfg.EtcdPrefix})
		if err != nil {
			return nil, fmt.Errorf("connect to etcd %s: %w", strings.Join(cfg.EtcdEndpoints, ","), err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("unknown --store %q: use bolt or etcd", cfg.Store)
}

// advertised is the host:port clients reach the listener at: the listen
// host, or loopback when it listens on every address.
func advertised(a *net.TCPAddr, listen string) string {
	host, _, _ := net.SplitHostPort(listen)
	if host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(a.Port))
}

// bootstrap creates the first tenant, subscription and Owner principal on
// first start and writes credentials.json; on later starts it refreshes
// the endpoints in that file (the listen address may have changed).
func bootstrap(ctx context.Context, ids *identity.Service, dataDir, caPath, base string, log *slog.Logger) error {
	path := filepath.Join(dataDir, CredentialsFile)
	creds, created, err := ids.Bootstrap(ctx, caPath)
	if err != nil {
		return fmt.Errorf("bootstrap identity: %w", err)
	}
	if created {
		log.Info("created the default tenant, subscription and Owner principal", "tenant", creds.TenantID,
			"subscription", creds.SubscriptionID, "client_id", creds.ClientID, "credentials", path)
		return identity.WriteCredentialsFile(path, creds)
	}
	old, err := identity.ReadCredentialsFile(path)
	if err != nil {
		return fmt.Errorf("read %s (it holds the default principal's secret; restore it or start on an empty --data-dir): %w", path, err)
	}
	old.ARMEndpoint, old.AuthorityHost, old.Audience, old.CAFile = base, base+"/", Audience, caPath
	return identity.WriteCredentialsFile(path, old)
}

// pruneRoleAssignments removes the role assignments whose resource group
// or resource is gone: left by deletions made before assignments went
// with their scope, they would otherwise apply again to a new resource of
// the same name.
func pruneRoleAssignments(ctx context.Context, ids *identity.Service, log *slog.Logger) error {
	n, err := ids.PruneRoleAssignments(ctx, func(tx store.Tx, scope string) (bool, error) { return arm.ScopeExists(tx, scope) })
	if err != nil {
		return err
	}
	if n > 0 {
		log.Warn("removed role assignments whose scope no longer exists", "count", n)
	}
	return nil
}

// pruneOperations removes long-finished operations every few minutes.
func pruneOperations(ctx context.Context, st store.Store, log *slog.Logger) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := arm.PruneOperations(ctx, st, time.Now().Add(-time.Hour)); err != nil {
			log.Warn("pruning finished operations failed", "err", err)
		} else if n > 0 {
			log.Debug("pruned finished operations", "count", n)
		}
	}
}
