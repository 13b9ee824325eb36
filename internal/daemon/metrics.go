package daemon

import (
	"log/slog"
	"net/http"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/datapath"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/telemetry"
)

// newTelemetry returns the daemon's metrics and, when it has a data path
// (fab and paths not nil), the connection audit to run beside the
// controllers (nil otherwise). paths is what the data path programmed.
func newTelemetry(fab *fabric.Fabric, paths *datapath.Observed, log *slog.Logger) (*telemetry.Metrics, *telemetry.Audit) {
	tlog := log.With("component", "telemetry")
	if fab == nil || paths == nil {
		return telemetry.NewMetrics(nil, nil, tlog), nil
	}
	m := telemetry.NewMetrics(fab, paths, tlog)
	return m, telemetry.NewAudit(fab, paths, log.With("component", "audit"), tlog, m)
}

// metricsHandler serves GET /metrics, in the Prometheus text format, to a
// principal holding a role somewhere, or the operator. The operator sees
// every series. Another principal sees only the data path's series of the
// private endpoints, servers and networks it may read (their type's read
// action at their scope, as a GET would need), so one tenant never learns
// another's resource IDs or traffic. Daemon-wide series (Go runtime,
// process, audit, the internet router's total, collection errors) sum up
// every tenant's activity: they are the operator's alone (visible("") is
// false for everyone else).
//
// Why a bearer token rather than no authentication on a loopback listener:
// series name every tenant's resources, and loopback is reachable by every
// local user and process of the host (and the listener need not be
// loopback at all).
func metricsHandler(ids *identity.Service, m *telemetry.Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := ids.Authenticate(r)
		if err != nil {
			writeErr(w, r, toARM(err))
			return
		}
		visible := telemetry.Visible(telemetry.All)
		if !p.Admin {
			g, err := ids.Grants(r.Context(), p)
			if err != nil {
				writeErr(w, r, err)
				return
			}
			if len(g.Assignments()) == 0 {
				writeErr(w, r, arm.Errorf(http.StatusForbidden, "AuthorizationFailed",
					"The client '%s' holds no role assignment, so it may not read metrics.", p.ClientID))
				return
			}
			visible = func(resourceID string) bool {
				id, err := arm.ParseID(resourceID)
				return resourceID != "" && err == nil && g.Allowed(id.Type()+"/read", id.String())
			}
		}
		m.Handler(visible).ServeHTTP(w, r)
	})
}
