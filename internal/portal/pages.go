package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"

	"github.com/privlink/privlink/internal/identity"
)

// layout is what every page's frame shows around its content.
type layout struct {
	Title  string
	S      *session
	Crumbs []crumb
	// Error is an error of the API (or the portal) shown in red above
	// the content.
	Error string
	Page  any
}

type crumb struct{ Name, URL string }

var funcs = template.FuncMap{
	"view":  viewURL,
	"blade": viewURLBlade,
	"last":  lastSegment,
	"csrf":  func(s *session) string { return s.CSRF },
	"join":  strings.Join,
}

// lastSegment is the name at the end of an ARM ID.
func lastSegment(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// render writes a page; a template that fails (a bug) is a 500 with
// nothing half-written.
func (p *Portal) render(w http.ResponseWriter, status int, name string, l layout) {
	var buf bytes.Buffer
	if err := p.pages[name].Execute(&buf, l); err != nil {
		p.log.Error("portal: render page", "page", name, "err", err)
		http.Error(w, "The portal could not render this page; privlinkd's log says why.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders the frame with only an error: the API's (its status, code
// and message) or the portal's.
func (p *Portal) fail(w http.ResponseWriter, s *session, crumbs []crumb, err error) {
	status := http.StatusInternalServerError
	var ae *APIError
	if errors.As(err, &ae) {
		status = ae.Status
	} else {
		p.log.Error("portal: page failed", "err", err)
	}
	p.render(w, status, "resource", layout{Title: "Error", S: s, Crumbs: crumbs, Error: errorText(err)})
}

func errorText(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code + ": " + ae.Message
	}
	return err.Error()
}

// crumbsOf are the breadcrumbs of an ARM ID: the subscription, the group,
// the resource and its children.
func crumbsOf(id string) []crumb {
	segs := strings.Split(strings.Trim(id, "/"), "/")
	out := []crumb{{"Home", Prefix + "/"}}
	if len(segs) >= 2 {
		out = append(out, crumb{"Subscription " + segs[1], viewURL(strings.Join(segs[:2], "/"))})
	}
	if len(segs) >= 4 {
		out = append(out, crumb{segs[3], viewURL(strings.Join(segs[:4], "/"))})
	}
	for i := 7; i < len(segs); i += 2 {
		out = append(out, crumb{segs[i], viewURL(strings.Join(segs[:i+1], "/"))})
	}
	return out
}

type subscriptionRow struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
	TenantID       string `json:"tenantId"`
}

func (p *Portal) serveHome(w http.ResponseWriter, r *http.Request, s *session) {
	subs, err := list[subscriptionRow](r.Context(), p.client(r, s), "/subscriptions")
	if err != nil {
		p.fail(w, s, nil, err)
		return
	}
	p.render(w, http.StatusOK, "home", layout{Title: "Subscriptions", S: s, Page: subs})
}

// resourceRow is a row of a list of resources.
type resourceRow struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	Location string `json:"location"`
	Props    struct {
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

// serveView shows the page of an ARM ID: a subscription, a group, or a
// resource (by its type).
func (p *Portal) serveView(w http.ResponseWriter, r *http.Request, s *session) {
	id := "/" + strings.Trim(r.PathValue("id"), "/")
	p.showResource(w, r, s, id, r.URL.Query().Get("blade"), http.StatusOK, "")
}

// showResource renders the page of id with an error from an action
// (status and message; "" for none).
func (p *Portal) showResource(w http.ResponseWriter, r *http.Request, s *session, id, blade string, status int, actionErr string) {
	segs := strings.Split(strings.Trim(id, "/"), "/")
	if !strings.EqualFold(segs[0], "subscriptions") || len(segs) < 2 || len(segs) == 3 || len(segs) == 5 {
		p.render(w, http.StatusNotFound, "resource", layout{Title: "Not found", S: s, Crumbs: crumbsOf(""),
			Error: "InvalidResourceId: '" + id + "' is not a subscription, resource group or resource ID."})
		return
	}
	ctx, c, crumbs := r.Context(), p.client(r, s), crumbsOf(id)
	l := layout{S: s, Crumbs: crumbs, Error: actionErr}
	var name string
	var data any
	var err error
	kind := ""
	if len(segs) >= 8 {
		kind = strings.ToLower(segs[5] + "/" + segs[6])
		if len(segs) > 8 {
			kind += "/child"
		}
	}
	switch {
	case len(segs) == 2:
		name, l.Title = "subscription", "Subscription "+segs[1]
		data, err = list[resourceRow](ctx, c, id+"/resourcegroups")
	case len(segs) == 4:
		name, l.Title = "group", "Resource group "+segs[3]
		data, err = list[resourceRow](ctx, c, id+"/resources")
	case kind == "microsoft.dbforpostgresql/flexibleservers":
		name, l.Title = "server", segs[7]
		data, err = p.serverPage(ctx, c, s, id, blade)
	case kind == "microsoft.network/privateendpoints":
		name, l.Title = "endpoint", segs[7]
		data, err = loadEndpoint(ctx, c, id)
	case kind == "microsoft.network/virtualnetworks":
		name, l.Title = "network", segs[7]
		data, err = loadNetwork(ctx, c, id, segs[1])
	default:
		name, l.Title = "resource", segs[len(segs)-1]
		data, err = loadGeneric(ctx, c, id)
	}
	if err != nil {
		p.fail(w, s, crumbs, err)
		return
	}
	l.Page = data
	p.render(w, status, name, l)
}

// serverPage is a flexible server's overview and Networking blade.
type serverPage struct {
	ID, Name, Location    string
	State, Version, FQDN  string
	SKU, Tier, AdminLogin string
	StorageGB             int
	PublicAccess          string
	Blade                 string
	Rules                 []firewallRule
	Conns                 []connection
	CanWrite, CanDecide   bool
}

type firewallRule struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Props struct {
		Start string `json:"startIpAddress"`
		End   string `json:"endIpAddress"`
	} `json:"properties"`
}

type connectionState struct {
	Status          string `json:"status"`
	Description     string `json:"description"`
	ActionsRequired string `json:"actionsRequired"`
}

type connection struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Props struct {
		PrivateEndpoint struct {
			ID string `json:"id"`
		} `json:"privateEndpoint"`
		GroupIDs          []string        `json:"groupIds"`
		State             connectionState `json:"privateLinkServiceConnectionState"`
		ProvisioningState string          `json:"provisioningState"`
	} `json:"properties"`
}

func (p *Portal) serverPage(ctx context.Context, c *client, s *session, id, blade string) (*serverPage, error) {
	var doc struct {
		Name     string `json:"name"`
		Location string `json:"location"`
		SKU      struct {
			Name string `json:"name"`
			Tier string `json:"tier"`
		} `json:"sku"`
		Props struct {
			State      string `json:"state"`
			Version    string `json:"version"`
			FQDN       string `json:"fullyQualifiedDomainName"`
			AdminLogin string `json:"administratorLogin"`
			Storage    struct {
				SizeGB int `json:"storageSizeGB"`
			} `json:"storage"`
			Network struct {
				PublicNetworkAccess string `json:"publicNetworkAccess"`
			} `json:"network"`
		} `json:"properties"`
	}
	if err := c.get(ctx, id, &doc); err != nil {
		return nil, err
	}
	if blade != "networking" {
		blade = "overview"
	}
	pg := &serverPage{ID: id, Name: doc.Name, Location: doc.Location, State: doc.Props.State, Version: doc.Props.Version,
		FQDN: doc.Props.FQDN, SKU: doc.SKU.Name, Tier: doc.SKU.Tier, AdminLogin: doc.Props.AdminLogin,
		StorageGB: doc.Props.Storage.SizeGB, PublicAccess: doc.Props.Network.PublicNetworkAccess, Blade: blade}
	if blade == "networking" {
		var err error
		if pg.Rules, err = list[firewallRule](ctx, c, id+"/firewallRules"); err != nil {
			return nil, err
		}
		if pg.Conns, err = list[connection](ctx, c, id+"/privateEndpointConnections"); err != nil {
			return nil, err
		}
	}
	may := p.permissions(ctx, c, s, id, "Microsoft.DBforPostgreSQL/flexibleServers/write",
		"Microsoft.DBforPostgreSQL/flexibleServers/privateEndpointConnections/write")
	pg.CanWrite = may[0]
	pg.CanDecide = may[0] && may[1]
	return pg, nil
}

// permissions reports, for each action, whether the signed-in principal
// holds it at scope, from what the API says of its role assignments and
// of the roles: the portal hides what it may not do (the API decides in
// any case). When the API does not say, it assumes yes.
func (p *Portal) permissions(ctx context.Context, c *client, s *session, scope string, actions ...string) []bool {
	out := make([]bool, len(actions))
	yes := func() []bool {
		for i := range out {
			out[i] = true
		}
		return out
	}
	type assignment struct {
		Props struct {
			RoleDefinitionID string `json:"roleDefinitionId"`
			PrincipalID      string `json:"principalId"`
		} `json:"properties"`
	}
	type definition struct {
		Name  string `json:"name"`
		Props struct {
			Permissions []struct {
				Actions    []string `json:"actions"`
				NotActions []string `json:"notActions"`
			} `json:"permissions"`
		} `json:"properties"`
	}
	ras, err := list[assignment](ctx, c, scope+"/providers/Microsoft.Authorization/roleAssignments?$filter="+
		"atScope() and principalId eq '"+s.ObjectID+"'")
	if err != nil {
		p.log.Debug("portal: role assignments unknown; showing every action", "scope", scope, "err", err)
		return yes()
	}
	sub := strings.Join(strings.SplitN(strings.Trim(scope, "/"), "/", 3)[:2], "/")
	defs, err := list[definition](ctx, c, "/"+sub+"/providers/Microsoft.Authorization/roleDefinitions")
	if err != nil {
		p.log.Debug("portal: role definitions unknown; showing every action", "scope", scope, "err", err)
		return yes()
	}
	for _, ra := range ras {
		if !strings.EqualFold(ra.Props.PrincipalID, s.ObjectID) {
			continue
		}
		for _, d := range defs {
			if !strings.EqualFold(d.Name, lastSegment(ra.Props.RoleDefinitionID)) {
				continue
			}
			for i, a := range actions {
				for _, perm := range d.Props.Permissions {
					if matchAny(perm.Actions, a) && !matchAny(perm.NotActions, a) {
						out[i] = true
					}
				}
			}
		}
	}
	return out
}

func matchAny(patterns []string, action string) bool {
	for _, pat := range patterns {
		if identity.MatchAction(pat, action) {
			return true
		}
	}
	return false
}

// endpointPage is a private endpoint's overview and DNS configuration.
type endpointPage struct {
	ID, Name, Location, ProvisioningState string
	Subnet                                string
	NICs                                  []string
	Conns                                 []endpointConnection
	DNS                                   []dnsConfig
	ZoneGroups                            []zoneGroup
}

type endpointConnection struct {
	Name  string `json:"name"`
	Props struct {
		Target         string          `json:"privateLinkServiceId"`
		GroupIDs       []string        `json:"groupIds"`
		RequestMessage string          `json:"requestMessage"`
		State          connectionState `json:"privateLinkServiceConnectionState"`
	} `json:"properties"`
	Manual bool `json:"-"`
}

type dnsConfig struct {
	FQDN        string   `json:"fqdn"`
	IPAddresses []string `json:"ipAddresses"`
}

type idRef struct {
	ID string `json:"id"`
}

type zoneGroup struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Props struct {
		Configs []struct {
			Name  string `json:"name"`
			Props struct {
				ZoneID     string `json:"privateDnsZoneId"`
				RecordSets []struct {
					RecordType  string   `json:"recordType"`
					FQDN        string   `json:"fqdn"`
					IPAddresses []string `json:"ipAddresses"`
				} `json:"recordSets"`
			} `json:"properties"`
		} `json:"privateDnsZoneConfigs"`
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

func loadEndpoint(ctx context.Context, c *client, id string) (*endpointPage, error) {
	var doc struct {
		Name     string `json:"name"`
		Location string `json:"location"`
		Props    struct {
			ProvisioningState string               `json:"provisioningState"`
			Subnet            idRef                `json:"subnet"`
			NICs              []idRef              `json:"networkInterfaces"`
			Auto              []endpointConnection `json:"privateLinkServiceConnections"`
			Manual            []endpointConnection `json:"manualPrivateLinkServiceConnections"`
			DNS               []dnsConfig          `json:"customDnsConfigs"`
		} `json:"properties"`
	}
	if err := c.get(ctx, id, &doc); err != nil {
		return nil, err
	}
	pg := &endpointPage{ID: id, Name: doc.Name, Location: doc.Location, ProvisioningState: doc.Props.ProvisioningState,
		Subnet: doc.Props.Subnet.ID, DNS: doc.Props.DNS}
	for _, n := range doc.Props.NICs {
		pg.NICs = append(pg.NICs, n.ID)
	}
	for _, m := range doc.Props.Manual {
		m.Manual = true
		pg.Conns = append(pg.Conns, m)
	}
	pg.Conns = append(doc.Props.Auto, pg.Conns...)
	var err error
	pg.ZoneGroups, err = list[zoneGroup](ctx, c, id+"/privateDnsZoneGroups")
	return pg, err
}

// networkPage is a virtual network's subnets, NICs, endpoints and
// policies.
type networkPage struct {
	ID, Name, Location string
	AddressSpace       []string
	Subnets            []subnet
	NICs               []nicRow
	Endpoints          []resourceRow
	NSGs               []policyRow[nsgRule]
	RouteTables        []policyRow[route]
}

type subnet struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Props struct {
		AddressPrefix                     string   `json:"addressPrefix"`
		AddressPrefixes                   []string `json:"addressPrefixes"`
		PrivateEndpointNetworkPolicies    string   `json:"privateEndpointNetworkPolicies"`
		PrivateLinkServiceNetworkPolicies string   `json:"privateLinkServiceNetworkPolicies"`
		NSG                               *idRef   `json:"networkSecurityGroup"`
		RouteTable                        *idRef   `json:"routeTable"`
	} `json:"properties"`
}

type nicRow struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Props struct {
		IPConfigurations []struct {
			Props struct {
				PrivateIPAddress string `json:"privateIPAddress"`
				Subnet           idRef  `json:"subnet"`
			} `json:"properties"`
		} `json:"ipConfigurations"`
		PrivateEndpoint *idRef `json:"privateEndpoint"`
		NSG             *idRef `json:"networkSecurityGroup"`
	} `json:"properties"`
	// Filled by the portal: the first configuration's address and
	// subnet.
	Address, Subnet string `json:"-"`
}

// policyRow is a policy a network's subnets name: its ID, the subnets,
// and its items (an NSG's rules, a route table's routes).
type policyRow[T any] struct {
	ID      string
	Subnets []string
	Items   []T
}

type nsgRule struct {
	Name  string `json:"name"`
	Props struct {
		Priority                 int    `json:"priority"`
		Direction                string `json:"direction"`
		Access                   string `json:"access"`
		Protocol                 string `json:"protocol"`
		SourceAddressPrefix      string `json:"sourceAddressPrefix"`
		DestinationAddressPrefix string `json:"destinationAddressPrefix"`
		DestinationPortRange     string `json:"destinationPortRange"`
	} `json:"properties"`
}

type route struct {
	Name  string `json:"name"`
	Props struct {
		AddressPrefix    string `json:"addressPrefix"`
		NextHopType      string `json:"nextHopType"`
		NextHopIPAddress string `json:"nextHopIpAddress"`
	} `json:"properties"`
}

func loadNetwork(ctx context.Context, c *client, id, sub string) (*networkPage, error) {
	var doc struct {
		Name     string `json:"name"`
		Location string `json:"location"`
		Props    struct {
			AddressSpace struct {
				Prefixes []string `json:"addressPrefixes"`
			} `json:"addressSpace"`
			Subnets []subnet `json:"subnets"`
		} `json:"properties"`
	}
	if err := c.get(ctx, id, &doc); err != nil {
		return nil, err
	}
	pg := &networkPage{ID: id, Name: doc.Name, Location: doc.Location, AddressSpace: doc.Props.AddressSpace.Prefixes, Subnets: doc.Props.Subnets}
	inNetwork := func(subnetID string) bool {
		return strings.HasPrefix(strings.ToLower(subnetID), strings.ToLower(id)+"/subnets/")
	}
	nics, err := list[nicRow](ctx, c, "/subscriptions/"+sub+"/providers/Microsoft.Network/networkInterfaces")
	if err != nil {
		return nil, err
	}
	for _, n := range nics {
		if len(n.Props.IPConfigurations) == 0 || !inNetwork(n.Props.IPConfigurations[0].Props.Subnet.ID) {
			continue
		}
		n.Address, n.Subnet = n.Props.IPConfigurations[0].Props.PrivateIPAddress, lastSegment(n.Props.IPConfigurations[0].Props.Subnet.ID)
		pg.NICs = append(pg.NICs, n)
	}
	type peRow struct {
		resourceRow
		Props struct {
			Subnet idRef `json:"subnet"`
		} `json:"properties"`
	}
	pes, err := list[peRow](ctx, c, "/subscriptions/"+sub+"/providers/Microsoft.Network/privateEndpoints")
	if err != nil {
		return nil, err
	}
	for _, pe := range pes {
		if inNetwork(pe.Props.Subnet.ID) {
			pg.Endpoints = append(pg.Endpoints, pe.resourceRow)
		}
	}
	// The policies the subnets name, each with the subnets it applies to.
	nsgs, rts := map[string][]string{}, map[string][]string{}
	for _, sn := range pg.Subnets {
		if sn.Props.NSG != nil {
			nsgs[sn.Props.NSG.ID] = append(nsgs[sn.Props.NSG.ID], sn.Name)
		}
		if sn.Props.RouteTable != nil {
			rts[sn.Props.RouteTable.ID] = append(rts[sn.Props.RouteTable.ID], sn.Name)
		}
	}
	if pg.NSGs, err = loadPolicies[nsgRule](ctx, c, nsgs, "securityRules"); err != nil {
		return nil, err
	}
	if pg.RouteTables, err = loadPolicies[route](ctx, c, rts, "routes"); err != nil {
		return nil, err
	}
	return pg, nil
}

// loadPolicies loads each policy (NSG, route table) of bySubnet (policy
// ID → the subnets it applies to), in ID order, with the items of its
// properties.{field}.
func loadPolicies[T any](ctx context.Context, c *client, bySubnet map[string][]string, field string) ([]policyRow[T], error) {
	var out []policyRow[T]
	for _, id := range sortedKeys(bySubnet) {
		var doc struct {
			Props map[string]json.RawMessage `json:"properties"`
		}
		if err := c.get(ctx, id, &doc); err != nil {
			return nil, err
		}
		row := policyRow[T]{ID: id, Subnets: bySubnet[id]}
		if raw, ok := doc.Props[field]; ok {
			if err := json.Unmarshal(raw, &row.Items); err != nil {
				return nil, fmt.Errorf("decode properties.%s of %s: %w", field, id, err)
			}
		}
		out = append(out, row)
	}
	return out, nil
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// genericPage is any other resource: its envelope and its JSON.
type genericPage struct {
	resourceRow
	JSON string
}

func loadGeneric(ctx context.Context, c *client, id string) (*genericPage, error) {
	resp, err := c.do(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, err
	}
	pg := &genericPage{}
	_ = json.Unmarshal(resp.Body, &pg.resourceRow)
	var buf bytes.Buffer
	if json.Indent(&buf, resp.Body, "", "  ") == nil {
		pg.JSON = buf.String()
	}
	return pg, nil
}
