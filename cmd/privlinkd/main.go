// Command privlinkd is the privlink daemon: an Azure Resource Manager
// compatible API for private connectivity to PostgreSQL, backed by real
// network namespaces and PostgreSQL servers.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/privlink/privlink/internal/daemon"
	"github.com/privlink/privlink/internal/pgserver"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == pgserver.PAMHelperCommand {
		// Run by PostgreSQL's PAM stack for a Microsoft Entra ID login
		// (pgserver's entra.go), not by users.
		os.Exit(pgserver.PAMHelperMain(os.Args[2:], os.Stderr))
	}
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
		fmt.Fprintf(os.Stderr, "privlinkd: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		fmt.Fprintf(os.Stderr, "privlinkd: --log-level: %v\n", err)
		os.Exit(2)
	}
	if endpoints != "" {
		cfg.EtcdEndpoints = strings.Split(endpoints, ",")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := daemon.Run(ctx, cfg); err != nil {
		cfg.Logger.Error("privlinkd failed", "err", err)
		os.Exit(1)
	}
}
