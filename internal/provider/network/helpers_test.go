package network

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/arm/armtest"
	"github.com/privlink/privlink/internal/provider/resources"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
	"github.com/privlink/privlink/internal/testkit"
)

const sub = armtest.Subscription

// env is a router with the network and resources providers over a bolt
// store, and the real SDK clients pointed at it.
type env struct {
	t      *testing.T
	ctx    context.Context
	st     store.Store
	srv    *armtest.Server
	groups *armresources.ResourceGroupsClient
	vnets  *armnetwork.VirtualNetworksClient
	subnet *armnetwork.SubnetsClient
	nsgs   *armnetwork.SecurityGroupsClient
	rules  *armnetwork.SecurityRulesClient
	defs   *armnetwork.DefaultSecurityRulesClient
	asgs   *armnetwork.ApplicationSecurityGroupsClient
	tables *armnetwork.RouteTablesClient
	routes *armnetwork.RoutesClient
	nics   *armnetwork.InterfacesClient
	ipcs   *armnetwork.InterfaceIPConfigurationsClient
}

var poll = &runtime.PollUntilDoneOptions{Frequency: armtest.PollFrequency}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, st)
}

// newEnvOn is newEnv over a given store, which it closes at the end.
func newEnvOn(t *testing.T, st store.Store) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	t.Cleanup(func() {
		if err := st.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("close store: %v", err)
		}
	})
	var all []*arm.ResourceType
	rp := resources.New(st, func() []*arm.ResourceType { return all })
	all = append(New(st).Types(), rp.Types()...)
	srv := armtest.NewServer(t, st, all...)
	f, err := armnetwork.NewClientFactory(sub, srv.Cred, srv.Options)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := armresources.NewResourceGroupsClient(sub, srv.Cred, srv.Options)
	if err != nil {
		t.Fatal(err)
	}
	return &env{
		t: t, ctx: ctx, st: st, srv: srv, groups: groups,
		vnets: f.NewVirtualNetworksClient(), subnet: f.NewSubnetsClient(),
		nsgs: f.NewSecurityGroupsClient(), rules: f.NewSecurityRulesClient(), defs: f.NewDefaultSecurityRulesClient(),
		asgs: f.NewApplicationSecurityGroupsClient(), tables: f.NewRouteTablesClient(), routes: f.NewRoutesClient(),
		nics: f.NewInterfacesClient(), ipcs: f.NewInterfaceIPConfigurationsClient(),
	}
}

// group creates a resource group in westeurope.
func (e *env) group(name string) {
	e.t.Helper()
	if _, err := e.groups.CreateOrUpdate(e.ctx, name, armresources.ResourceGroup{Location: to.Ptr("westeurope")}, nil); err != nil {
		e.t.Fatalf("create group %s: %v", name, err)
	}
}

func (e *env) deleteGroup(name string) error {
	p, err := e.groups.BeginDelete(e.ctx, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

// vnetBody is a VNet in westeurope with one address prefix and subnets
// given as name=prefix pairs.
func vnetBody(space string, subnets ...string) armnetwork.VirtualNetwork {
	v := armnetwork.VirtualNetwork{
		Location: to.Ptr("westeurope"),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to.Ptr(space)}},
		},
	}
	if len(subnets) > 0 {
		v.Properties.Subnets = []*armnetwork.Subnet{}
		for _, s := range subnets {
			name, prefix, _ := strings.Cut(s, "=")
			v.Properties.Subnets = append(v.Properties.Subnets, &armnetwork.Subnet{
				Name: to.Ptr(name), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr(prefix)},
			})
		}
	}
	return v
}

func (e *env) putVNet(rg, name string, v armnetwork.VirtualNetwork) (armnetwork.VirtualNetwork, error) {
	p, err := e.vnets.BeginCreateOrUpdate(e.ctx, rg, name, v, nil)
	if err != nil {
		return armnetwork.VirtualNetwork{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.VirtualNetwork, err
}

func (e *env) mustVNet(rg, name string, v armnetwork.VirtualNetwork) armnetwork.VirtualNetwork {
	e.t.Helper()
	out, err := e.putVNet(rg, name, v)
	if err != nil {
		e.t.Fatalf("put vnet %s: %v", name, err)
	}
	return out
}

func (e *env) putSubnet(rg, vnet, name string, s armnetwork.Subnet) (armnetwork.Subnet, error) {
	p, err := e.subnet.BeginCreateOrUpdate(e.ctx, rg, vnet, name, s, nil)
	if err != nil {
		return armnetwork.Subnet{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.Subnet, err
}

func (e *env) deleteSubnet(rg, vnet, name string) error {
	p, err := e.subnet.BeginDelete(e.ctx, rg, vnet, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

func (e *env) deleteVNet(rg, name string) error {
	p, err := e.vnets.BeginDelete(e.ctx, rg, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

func (e *env) putNSG(rg, name string, n armnetwork.SecurityGroup) (armnetwork.SecurityGroup, error) {
	p, err := e.nsgs.BeginCreateOrUpdate(e.ctx, rg, name, n, nil)
	if err != nil {
		return armnetwork.SecurityGroup{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.SecurityGroup, err
}

func (e *env) mustNSG(rg, name string, rules ...*armnetwork.SecurityRule) armnetwork.SecurityGroup {
	e.t.Helper()
	n := armnetwork.SecurityGroup{Location: to.Ptr("westeurope"), Properties: &armnetwork.SecurityGroupPropertiesFormat{}}
	if len(rules) > 0 {
		n.Properties.SecurityRules = rules
	}
	out, err := e.putNSG(rg, name, n)
	if err != nil {
		e.t.Fatalf("put nsg %s: %v", name, err)
	}
	return out
}

func (e *env) deleteNSG(rg, name string) error {
	p, err := e.nsgs.BeginDelete(e.ctx, rg, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

func (e *env) putRule(rg, nsg, name string, r armnetwork.SecurityRule) (armnetwork.SecurityRule, error) {
	p, err := e.rules.BeginCreateOrUpdate(e.ctx, rg, nsg, name, r, nil)
	if err != nil {
		return armnetwork.SecurityRule{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.SecurityRule, err
}

func (e *env) putASG(rg, name string) (armnetwork.ApplicationSecurityGroup, error) {
	p, err := e.asgs.BeginCreateOrUpdate(e.ctx, rg, name, armnetwork.ApplicationSecurityGroup{Location: to.Ptr("westeurope")}, nil)
	if err != nil {
		return armnetwork.ApplicationSecurityGroup{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.ApplicationSecurityGroup, err
}

func (e *env) mustASG(rg, name string) armnetwork.ApplicationSecurityGroup {
	e.t.Helper()
	a, err := e.putASG(rg, name)
	if err != nil {
		e.t.Fatalf("put asg %s: %v", name, err)
	}
	return a
}

func (e *env) deleteASG(rg, name string) error {
	p, err := e.asgs.BeginDelete(e.ctx, rg, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

func (e *env) putTable(rg, name string, t armnetwork.RouteTable) (armnetwork.RouteTable, error) {
	p, err := e.tables.BeginCreateOrUpdate(e.ctx, rg, name, t, nil)
	if err != nil {
		return armnetwork.RouteTable{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.RouteTable, err
}

func (e *env) deleteTable(rg, name string) error {
	p, err := e.tables.BeginDelete(e.ctx, rg, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

func (e *env) putRoute(rg, table, name string, r armnetwork.Route) (armnetwork.Route, error) {
	p, err := e.routes.BeginCreateOrUpdate(e.ctx, rg, table, name, r, nil)
	if err != nil {
		return armnetwork.Route{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.Route, err
}

// nicBody is a NIC in westeurope with one Dynamic ipConfiguration in subnet.
func nicBody(subnet string) armnetwork.Interface {
	return armnetwork.Interface{
		Location: to.Ptr("westeurope"),
		Properties: &armnetwork.InterfacePropertiesFormat{
			IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{
				Name: to.Ptr("ipconfig1"),
				Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
					Subnet: &armnetwork.Subnet{ID: to.Ptr(subnet)},
				},
			}},
		},
	}
}

// staticNIC is nicBody with a Static address.
func staticNIC(subnet, addr string) armnetwork.Interface {
	n := nicBody(subnet)
	p := n.Properties.IPConfigurations[0].Properties
	p.PrivateIPAllocationMethod = to.Ptr(armnetwork.IPAllocationMethodStatic)
	p.PrivateIPAddress = to.Ptr(addr)
	return n
}

func (e *env) putNIC(rg, name string, n armnetwork.Interface) (armnetwork.Interface, error) {
	p, err := e.nics.BeginCreateOrUpdate(e.ctx, rg, name, n, nil)
	if err != nil {
		return armnetwork.Interface{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.Interface, err
}

func (e *env) mustNIC(rg, name string, n armnetwork.Interface) armnetwork.Interface {
	e.t.Helper()
	out, err := e.putNIC(rg, name, n)
	if err != nil {
		e.t.Fatalf("put nic %s: %v", name, err)
	}
	return out
}

func (e *env) deleteNIC(rg, name string) error {
	p, err := e.nics.BeginDelete(e.ctx, rg, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

// subnetID is the ID of a subnet in the test subscription.
func subnetID(rg, vnet, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Network/virtualNetworks/" + vnet + "/subnets/" + name
}

func resID(rg, typ, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Network/" + typ + "/" + name
}

// ipOf is the private address of a NIC's first ipConfiguration.
func ipOf(n armnetwork.Interface) string {
	if n.Properties == nil || len(n.Properties.IPConfigurations) == 0 || n.Properties.IPConfigurations[0].Properties == nil {
		return ""
	}
	return str(n.Properties.IPConfigurations[0].Properties.PrivateIPAddress)
}

// wantTarget asserts err's body names target and mentions each of words.
func wantTarget(t *testing.T, e testkit.ARMError, target string, words ...string) {
	t.Helper()
	if e.Target != target {
		t.Errorf("target = %q, want %q (message: %s)", e.Target, target, e.Message)
	}
	for _, w := range words {
		if !strings.Contains(e.Message, w) {
			t.Errorf("message %q does not mention %q", e.Message, w)
		}
	}
}

// raw sends a request outside the SDK (for bodies the SDK cannot produce,
// such as an explicit null, or with headers given as name, value pairs)
// and returns the status and body.
func (e *env) raw(method, path, body string, headers ...string) (int, []byte) {
	e.t.Helper()
	code, b, _ := e.rawURL(method, e.srv.URL+path+"?api-version=2025-01-01", body, headers...)
	return code, b
}

// rawURL is raw for an absolute URL, returning the response headers too.
func (e *env) rawURL(method, url, body string, headers ...string) (int, []byte, http.Header) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, method, url, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer armtest")
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client, ok := e.srv.Options.Transport.(*http.Client)
	if !ok {
		e.t.Fatalf("armtest transport is %T, not *http.Client", e.srv.Options.Transport)
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// collect drains a pager into a slice.
func collect[P any, T any](t *testing.T, ctx context.Context, pager *runtime.Pager[P], items func(P) []T) []T {
	t.Helper()
	var out []T
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		out = append(out, items(page)...)
	}
	return out
}
