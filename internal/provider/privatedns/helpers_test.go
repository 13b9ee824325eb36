package privatedns

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/arm/armtest"
	"github.com/privlink/privlink/internal/provider/resources"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

const sub = armtest.Subscription

var poll = &runtime.PollUntilDoneOptions{Frequency: armtest.PollFrequency}

// env is a router with the private DNS and resources providers over a bolt
// store, driven by the real SDK clients.
type env struct {
	t       *testing.T
	ctx     context.Context
	st      store.Store
	srv     *armtest.Server
	groups  *armresources.ResourceGroupsClient
	zones   *armprivatedns.PrivateZonesClient
	links   *armprivatedns.VirtualNetworkLinksClient
	records *armprivatedns.RecordSetsClient
}

func newEnv(t *testing.T, groups ...string) *env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var all []*arm.ResourceType
	all = append(all, New(st).Types()...)
	all = append(all, resources.New(st, func() []*arm.ResourceType { return all }).Types()...)
	srv := armtest.NewServer(t, st, all...)
	rgc, err := armresources.NewResourceGroupsClient(sub, srv.Cred, srv.Options)
	if err != nil {
		t.Fatal(err)
	}
	f, err := armprivatedns.NewClientFactory(sub, srv.Cred, srv.Options)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, ctx: context.Background(), st: st, srv: srv, groups: rgc,
		zones: f.NewPrivateZonesClient(), links: f.NewVirtualNetworkLinksClient(), records: f.NewRecordSetsClient(),
	}
	for _, g := range append([]string{"rg1"}, groups...) {
		if _, err := rgc.CreateOrUpdate(e.ctx, g, armresources.ResourceGroup{Location: ptr("westeurope")}, nil); err != nil {
			t.Fatalf("create resource group %s: %v", g, err)
		}
	}
	return e
}

// createZone creates a zone through the SDK and returns the result.
func (e *env) createZone(rg, name string, opts *armprivatedns.PrivateZonesClientBeginCreateOrUpdateOptions) armprivatedns.PrivateZone {
	e.t.Helper()
	z, err := e.putZone(rg, name, armprivatedns.PrivateZone{Location: ptr("Global")}, opts)
	if err != nil {
		e.t.Fatalf("create zone %s: %v", name, err)
	}
	return z
}

func (e *env) putZone(rg, name string, z armprivatedns.PrivateZone, opts *armprivatedns.PrivateZonesClientBeginCreateOrUpdateOptions) (armprivatedns.PrivateZone, error) {
	p, err := e.zones.BeginCreateOrUpdate(e.ctx, rg, name, z, opts)
	if err != nil {
		return armprivatedns.PrivateZone{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.PrivateZone, err
}

func (e *env) putLink(rg, zone, name, vnetID string, reg bool) (armprivatedns.VirtualNetworkLink, error) {
	p, err := e.links.BeginCreateOrUpdate(e.ctx, rg, zone, name, armprivatedns.VirtualNetworkLink{
		Location: ptr("Global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{
			VirtualNetwork: &armprivatedns.SubResource{ID: ptr(vnetID)}, RegistrationEnabled: ptr(reg),
		},
	}, nil)
	if err != nil {
		return armprivatedns.VirtualNetworkLink{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.VirtualNetworkLink, err
}

func (e *env) deleteLink(rg, zone, name string) {
	e.t.Helper()
	p, err := e.links.BeginDelete(e.ctx, rg, zone, name, nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		e.t.Fatalf("delete link %s: %v", name, err)
	}
}

func (e *env) deleteZone(rg, name string, opts *armprivatedns.PrivateZonesClientBeginDeleteOptions) error {
	p, err := e.zones.BeginDelete(e.ctx, rg, name, opts)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

// putVNet writes a minimal virtual network document, as the network
// provider stores one, and returns its ID.
func (e *env) putVNet(subscription, rg, name string) string {
	e.t.Helper()
	s := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/%s", subscription, rg, name)
	id, err := arm.ParseID(s)
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = e.st.Txn(e.ctx, func(tx store.Tx) error {
		return arm.Save(tx, id, armnetwork.VirtualNetwork{
			ID: ptr(s), Name: ptr(name), Type: ptr("Microsoft.Network/virtualNetworks"), Location: ptr("westeurope"),
		})
	})
	if err != nil {
		e.t.Fatalf("save virtual network: %v", err)
	}
	return s
}

func (e *env) zoneID(rg, name string) arm.ResourceID {
	id, err := arm.ParseID(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/privateDnsZones/%s", sub, rg, name))
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) getZone(rg, name string) armprivatedns.PrivateZone {
	e.t.Helper()
	z, err := e.zones.Get(e.ctx, rg, name, nil)
	if err != nil {
		e.t.Fatalf("get zone %s: %v", name, err)
	}
	return z.PrivateZone
}

// captured returns a context that records the raw response of a call.
func captured(ctx context.Context) (context.Context, **http.Response) {
	var resp *http.Response
	return policy.WithCaptureResponse(ctx, &resp), &resp
}

func counts(z armprivatedns.PrivateZone) [3]int64 {
	p := deref(z.Properties)
	return [3]int64{deref(p.NumberOfRecordSets), deref(p.NumberOfVirtualNetworkLinks), deref(p.NumberOfVirtualNetworkLinksWithRegistration)}
}
