// Package flex holds what the flexible-server benchmarks share: the server
// body they create, the timing of a long-running operation as the daemon
// recorded it, and a TLS login to a server made from inside its namespace.
package flex

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/jackc/pgx/v5"
	"github.com/privlink/privlink/bench/internal/nsclient"
	"github.com/privlink/privlink/bench/internal/sdk"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/names"
	"github.com/privlink/privlink/internal/pgserver"

	plarm "github.com/privlink/privlink/internal/arm"
)

// AdminLogin and AdminPassword are the administrator of every server the
// benchmarks create.
const (
	AdminLogin    = "pgadmin"
	AdminPassword = "Str0ng-Passw0rd!"
	// Version is the PostgreSQL major version of the servers.
	Version = "15"
)

// ServerBody is a Burstable B1ms PostgreSQL 15 server with 32 GB storage.
func ServerBody() armpostgresqlflexibleservers.Server {
	return armpostgresqlflexibleservers.Server{
		Location: sdk.To(sdk.Location),
		SKU:      &armpostgresqlflexibleservers.SKU{Name: sdk.To("Standard_B1ms"), Tier: sdk.To(armpostgresqlflexibleservers.SKUTierBurstable)},
		Properties: &armpostgresqlflexibleservers.ServerProperties{
			Version:                    sdk.To(armpostgresqlflexibleservers.PostgresMajorVersion(Version)),
			AdministratorLogin:         sdk.To(AdminLogin),
			AdministratorLoginPassword: sdk.To(AdminPassword),
			Storage:                    &armpostgresqlflexibleservers.Storage{StorageSizeGB: sdk.To[int32](32)},
		},
	}
}

// Ops reads long-running operations' status URLs with the SDK's
// authenticated pipeline.
type Ops struct {
	pl azruntime.Pipeline
}

// NewOps returns an Ops for cfg's principal.
func NewOps(cfg *azconfig.Config) (*Ops, error) {
	c, err := arm.NewClient("privlink-bench", "v0.0.0", cfg.Credential, cfg.ClientOptions())
	if err != nil {
		return nil, fmt.Errorf("arm client: %w", err)
	}
	return &Ops{pl: c.Pipeline()}, nil
}

// OpTimes is what the daemon recorded of one operation.
type OpTimes struct {
	Status     string
	Start, End time.Time
}

// Took is End − Start: from the transaction that accepted the request to
// the one that finished the operation.
func (o OpTimes) Took() time.Duration { return o.End.Sub(o.Start) }

// Times reads the Azure-AsyncOperation status of the request whose
// response is resp (captured with runtime.WithCaptureResponse).
func (o *Ops) Times(ctx context.Context, resp *http.Response) (OpTimes, error) {
	var t OpTimes
	if resp == nil {
		return t, errors.New("no captured response")
	}
	u := resp.Header.Get("Azure-AsyncOperation")
	if u == "" {
		return t, fmt.Errorf("response %s has no Azure-AsyncOperation header", resp.Status)
	}
	req, err := azruntime.NewRequest(ctx, http.MethodGet, u)
	if err != nil {
		return t, err
	}
	r, err := o.pl.Do(req)
	if err != nil {
		return t, fmt.Errorf("get operation: %w", err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return t, fmt.Errorf("get operation: %w", err)
	}
	if r.StatusCode != http.StatusOK {
		return t, fmt.Errorf("get operation: %s: %s", r.Status, b)
	}
	var body struct {
		Status    string `json:"status"`
		StartTime string `json:"startTime"`
		EndTime   string `json:"endTime"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return t, fmt.Errorf("operation body %s: %w", b, err)
	}
	t.Status = body.Status
	if t.Start, err = time.Parse(time.RFC3339Nano, body.StartTime); err != nil {
		return t, fmt.Errorf("operation startTime %q: %w", body.StartTime, err)
	}
	if t.End, err = time.Parse(time.RFC3339Nano, body.EndTime); err != nil {
		return t, fmt.Errorf("operation endTime %q (status %s): %w", body.EndTime, body.Status, err)
	}
	return t, nil
}

// ServerID is the ARM ID of server name in group rg of cfg's subscription.
func ServerID(cfg *azconfig.Config, rg, name string) plarm.ResourceID {
	id, _ := plarm.ParseID("/subscriptions/" + cfg.Creds.SubscriptionID + "/resourceGroups/" + rg +
		"/providers/Microsoft.DBforPostgreSQL/flexibleServers/" + name)
	return id
}

// Server is how a benchmark reaches one flexible server: its service
// namespace, its address there, and its cluster's files.
type Server struct {
	Name string
	NS   string
	Addr netip.Addr
	// Dir is DATA/pg/{fabric id}, the cluster's directory.
	Dir string
}

// Find locates server name of group rg: its namespace must exist, with
// the service address on its lo.
func Find(fab *fabric.Fabric, cfg *azconfig.Config, dataDir, rg, name string) (Server, error) {
	fid := names.Key(ServerID(cfg, rg, name))
	s := Server{Name: name, NS: fab.NamespaceName(fabric.KindService, fid), Dir: filepath.Join(dataDir, "pg", fid)}
	err := fab.Do(s.NS, func() error {
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		addrs, err := lo.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() {
				s.Addr = p.Addr()
			}
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("server %s: %w", name, err)
	}
	if !s.Addr.IsValid() {
		return s, fmt.Errorf("server %s: no service address on lo in %s", name, s.NS)
	}
	return s, nil
}

// Login opens a TLS session as the administrator from inside the server's
// namespace to its service address: see LoginAt.
func Login(ctx context.Context, fab *fabric.Fabric, caFile string, s Server) error {
	return LoginAt(ctx, fab, caFile, s.NS, s.Addr, s.Name)
}

// LoginAt opens a TLS session as the administrator of server name from
// inside namespace ns (fabric.DialContext) to addr, verifying the
// certificate for NAME.postgres.database.azure.com against privlink's CA
// (sslmode verify-full, SCRAM), runs SELECT 1 and closes it.
func LoginAt(ctx context.Context, fab *fabric.Fabric, caFile, ns string, addr netip.Addr, name string) error {
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s.postgres.database.azure.com port=%d user=%s password=%s dbname=postgres sslmode=verify-full sslrootcert=%s connect_timeout=5",
		name, pgserver.Port, AdminLogin, AdminPassword, caFile))
	if err != nil {
		return err
	}
	cc.LookupFunc = func(context.Context, string) ([]string, error) { return []string{addr.String()}, nil }
	cc.DialFunc = func(ctx context.Context, network, a string) (net.Conn, error) {
		return fab.DialContext(ctx, ns, network, a)
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	if one != 1 {
		return fmt.Errorf("SELECT 1 returned %d", one)
	}
	return nil
}

// PSQL runs `ip netns exec NS psql` as the administrator with TLS
// (verify-full) and returns its trimmed output.
func PSQL(ctx context.Context, caFile string, s Server, query string) (string, error) {
	conn := fmt.Sprintf("host=%s.postgres.database.azure.com hostaddr=%s port=%d user=%s dbname=postgres sslmode=verify-full sslrootcert=%s connect_timeout=5",
		s.Name, s.Addr, pgserver.Port, AdminLogin, caFile)
	cmd := nsclient.Command(ctx, s.NS, "psql", conn, "-XAtq", "-c", query)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+AdminPassword)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql in %s: %w: %s", s.NS, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// WaitSpare waits until the daemon's spare copy of the version's template
// is complete (DATA/pg/.spare-VERSION-* exists and no copy is in
// progress), so that the next creation takes it as pgserver's
// BenchmarkCreate/spare does.
func WaitSpare(ctx context.Context, dataDir string, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	pg := filepath.Join(dataDir, "pg")
	for {
		spares, _ := filepath.Glob(filepath.Join(pg, ".spare-"+Version+"-*"))
		tmps, _ := filepath.Glob(filepath.Join(pg, ".sparetmp-"+Version+"-*"))
		if len(spares) > 0 && len(tmps) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no spare copy of the template in %s after %v", pg, bound)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// PostmasterPID reads the server's DATA/pg/{id}/data/postmaster.pid.
func (s Server) PostmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	var pid int
	if _, err := fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "%d", &pid); err != nil {
		return 0, fmt.Errorf("postmaster.pid of %s: %w", s.Name, err)
	}
	return pid, nil
}

// Create PUTs server name of group rg (ServerBody) and polls it until done;
// it is an error if it is not Ready then. The PUT's response goes to *resp
// when resp is not nil (see Ops.Times).
func Create(ctx context.Context, c *sdk.Clients, rg, name string, resp **http.Response) (sdk.Times, error) {
	var t sdk.Times
	start := time.Now()
	p, err := c.Servers.BeginCreateOrUpdate(sdk.Capture(ctx, resp), rg, name, ServerBody(), nil)
	if err != nil {
		return t, fmt.Errorf("create server %s: %w", name, err)
	}
	t.Answered = time.Since(start)
	r, err := p.PollUntilDone(ctx, sdk.PollOpts)
	t.Done = time.Since(start)
	if err != nil {
		return t, fmt.Errorf("create server %s: %w", name, err)
	}
	if st := r.Properties.State; st == nil || *st != armpostgresqlflexibleservers.ServerStateReady {
		return t, fmt.Errorf("server %s: state %v after its poller finished", name, st)
	}
	return t, nil
}

// Delete deletes server name of group rg and polls until done.
func Delete(ctx context.Context, c *sdk.Clients, rg, name string) error {
	p, err := c.Servers.BeginDelete(ctx, rg, name, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, sdk.PollOpts)
	}
	if err != nil {
		return fmt.Errorf("delete server %s: %w", name, err)
	}
	return nil
}
