package telemetry

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/privlink/privlink/internal/datapath"
	"github.com/privlink/privlink/internal/fabric"
)

const plsID = sub + "/providers/Microsoft.Network/privateLinkServices/pls1"

// TestAuditRelayed: a relayed connection's line names its endpoint by the
// route's translation name, as a kernel path's line does, marked relayed;
// after the endpoint left the snapshot, its last description is used; an
// endpoint never described still gets a line of kind endpoint.
func TestAuditRelayed(t *testing.T) {
	snap := testSnapshot()
	snap.Translations = append(snap.Translations, datapath.TranslationInfo{Kind: datapath.KindEndpoint, Name: "pe3",
		Programmed: true, Network: "net1", NetworkID: vnetID, EndpointID: sub + "/providers/Microsoft.Network/privateEndpoints/pe3",
		Connection: "pe3.77aa", ServerID: plsID, ServerName: "pls1", Addr: mustAddr("10.0.2.7"), Port: 80})
	paths := &staticPaths{snap}
	var b bytes.Buffer
	out := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	a := NewAudit(&fakeFabric{}, paths, out, nil, NewMetrics(nil, nil, nil))
	start := time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)
	ev := fabric.FlowEvent{Type: fabric.FlowEnded,
		Flow: fabric.Flow{Client: mustAddrPort("10.0.1.4:40001"), Target: mustAddrPort("10.0.2.7:80"),
			Service: mustAddrPort("10.0.5.4:80"), Source: mustAddrPort("10.0.5.10:51000")},
		Start: start, Stop: start.Add(250 * time.Millisecond), End: fabric.FlowClosed, BytesIn: 12, BytesOut: 345}
	a.Relayed("pe3:80", ev)
	want := `level=INFO msg=connection kind=endpoint endpoint=` + sub + `/providers/Microsoft.Network/privateEndpoints/pe3 connection=pe3.77aa network=` + vnetID +
		` server=` + plsID + ` server_name=pls1 client_addr=10.0.1.4 client_port=40001 target=10.0.2.7:80 seen_as=10.0.5.10:51000` +
		` bytes_in=12 bytes_out=345 packets_in=0 packets_out=0 start=2026-12-08T02:00:00.000Z duration=250ms ended=closed relayed=true`
	if got := strings.TrimSpace(b.String()); got != want {
		t.Errorf("relayed line:\ngot  %s\nwant %s", got, want)
	}

	b.Reset()
	paths.snap = datapath.Snapshot{} // pe3 deleted: its route went, its session revoked
	ev.End = fabric.FlowRevoked
	a.Relayed("pe3:80", ev)
	if got := b.String(); !strings.Contains(got, " endpoint="+sub+"/providers/Microsoft.Network/privateEndpoints/pe3 ") || !strings.Contains(got, " ended=revoked relayed=true") {
		t.Errorf("revoked relayed line of a deleted endpoint does not name it: %s", got)
	}
	b.Reset()
	a.Relayed("nobody:80", ev)
	if got := b.String(); !strings.Contains(got, `kind=endpoint endpoint="" `) || !strings.Contains(got, "relayed=true") {
		t.Errorf("line of a relay route never described: %s", got)
	}
	if got := testutil.ToFloat64(a.m.auditConnections.WithLabelValues("endpoint", "revoked")); got != 2 {
		t.Errorf("audit counter of revoked endpoint connections: %v, want 2", got)
	}
	if got := testutil.ToFloat64(a.m.auditConnections.WithLabelValues("endpoint", "closed")); got != 1 {
		t.Errorf("audit counter of closed endpoint connections: %v, want 1", got)
	}
}
