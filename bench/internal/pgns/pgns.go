// Package pgns runs a throwaway PostgreSQL inside a network namespace for
// the benchmark programs, and pgbench against it from another namespace
// (never from the host's: the network rule).
package pgns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/privlink/privlink/bench/internal/nsclient"
)

// Server is a PostgreSQL cluster in a namespace, with trust
// authentication for user postgres from the addresses of its hba prefix
// (reachable only inside privlink's namespaces).
type Server struct {
	ctx  context.Context
	ns   string
	dir  string
	bin  string
	Addr netip.Addr
}

// Start initialises a cluster in a temporary directory and starts it in
// namespace ns, listening on addr:5432, letting in user postgres from
// hba (for example "10.0.0.0/8"). bin is PostgreSQL's bin directory. Stop
// it with Close.
func Start(ctx context.Context, ns, bin string, addr netip.Addr, hba string) (*Server, error) {
	dir, err := os.MkdirTemp("", "pgns-")
	if err != nil {
		return nil, err
	}
	s := &Server{ctx: ctx, ns: ns, dir: dir, bin: bin, Addr: addr}
	pg, err := user.Lookup("postgres")
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("the postgres system user (Debian's postgresql-15): %w", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := s.asPG("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-N").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = fmt.Fprintf(f, "host all postgres %s trust\n", hba)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_hba.conf: %w", err)
	}
	opts := fmt.Sprintf("-c listen_addresses=%s -c port=5432 -k %s -c max_connections=50 -c fsync=off", addr, dir)
	if out, err := s.asPG("pg_ctl", "-D", data, "-o", opts, "-w", "-l", filepath.Join(dir, "log"), "start").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	return s, nil
}

func (s *Server) asPG(name string, args ...string) *exec.Cmd {
	return nsclient.Command(s.ctx, s.ns, "runuser", append([]string{"-u", "postgres", "--", filepath.Join(s.bin, name)}, args...)...)
}

// Close stops the cluster (immediate shutdown) and removes it.
func (s *Server) Close() error {
	err := s.asPG("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop").Run()
	return errors.Join(err, os.RemoveAll(s.dir))
}

var tpsRE = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

// PGBench runs pgbench as user postgres from namespace ns against
// target (host and port) and returns its output and, when it printed
// one, its tps.
func PGBench(ctx context.Context, ns string, target netip.AddrPort, args ...string) (string, float64, error) {
	a := append([]string{"-h", target.Addr().String(), "-p", strconv.Itoa(int(target.Port())), "-U", "postgres"}, args...)
	out, err := nsclient.Command(ctx, ns, "pgbench", append(a, "postgres")...).CombinedOutput()
	if err != nil {
		return string(out), 0, fmt.Errorf("pgbench %s: %v\n%s", strings.Join(a, " "), err, out)
	}
	var tps float64
	if m := tpsRE.FindSubmatch(out); m != nil {
		tps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	return string(out), tps, nil
}
