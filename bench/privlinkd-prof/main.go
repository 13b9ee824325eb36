// Command privlinkd-prof is privlinkd (the same flags, the same
// daemon.Run) that also serves Go's CPU profiler on a unix socket,
// DATA_DIR/pprof.sock, so that a benchmark can profile the daemon over
// exactly the part it measures:
//
//	POST /cpu/start   start a CPU profile
//	POST /cpu/stop    stop it; the body is the profile (go tool pprof)
//	GET  /heap        a heap profile
//
// It is a diagnostic build for the benchmarks under bench/ (see
// endpointbench -cpuprofile), not a way to run privlink.
//
//	go build -o /tmp/pl/ ./bench/privlinkd-prof
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"

	"github.com/privlink/privlink/internal/daemon"
)

func main() {
	var cfg daemon.Config
	var endpoints, level string
	flag.StringVar(&cfg.DataDir, "data-dir", "/var/lib/privlink", "directory for the store, the CA and credentials.json")
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "host:port of the HTTPS API (ARM and identity)")
	flag.StringVar(&cfg.NetnsPrefix, "netns-prefix", "pl-", "prefix of every network namespace this daemon owns")
	flag.StringVar(&cfg.Store, "store", "bolt", "state store: bolt (a file in --data-dir) or etcd")
	flag.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated etcd client URLs, with --store etcd")
	flag.StringVar(&cfg.EtcdPrefix, "etcd-prefix", "/privlink/", "key prefix of this daemon's state in etcd")
	flag.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "privlinkd-prof: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		fmt.Fprintf(os.Stderr, "privlinkd-prof: --log-level: %v\n", err)
		os.Exit(2)
	}
	if endpoints != "" {
		cfg.EtcdEndpoints = strings.Split(endpoints, ",")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		cfg.Logger.Error("privlinkd-prof failed", "err", err)
		os.Exit(1)
	}
	sock := filepath.Join(cfg.DataDir, "pprof.sock")
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		cfg.Logger.Error("privlinkd-prof failed", "err", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: profiler()}
	go func() { _ = srv.Serve(ln) }()
	err = daemon.Run(ctx, cfg)
	_ = srv.Close()
	_ = os.Remove(sock)
	if err != nil {
		cfg.Logger.Error("privlinkd failed", "err", err)
		os.Exit(1)
	}
}

func profiler() http.Handler {
	var (
		mu  sync.Mutex
		buf *bytes.Buffer
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cpu/start", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if buf != nil {
			http.Error(w, "a profile is running", http.StatusConflict)
			return
		}
		b := &bytes.Buffer{}
		if err := pprof.StartCPUProfile(b); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		buf = b
	})
	mux.HandleFunc("POST /cpu/stop", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if buf == nil {
			http.Error(w, "no profile is running", http.StatusConflict)
			return
		}
		pprof.StopCPUProfile()
		_, _ = w.Write(buf.Bytes())
		buf = nil
	})
	mux.HandleFunc("GET /heap", func(w http.ResponseWriter, _ *http.Request) {
		_ = pprof.Lookup("heap").WriteTo(w, 0)
	})
	return mux
}
