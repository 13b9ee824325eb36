package postgres

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/privlink/privlink/internal/arm"
)

// Private link resources: what a private endpoint can connect to on a
// server. A flexible server has exactly one, the group postgresqlServer,
// whose DNS records belong in privatelink.postgres.database.azure.com.

const (
	// GroupID is the private link group of a server: a private endpoint's
	// groupIds name it.
	GroupID = "postgresqlServer"
	// PrivateDNSZone is the private DNS zone a server's endpoints use.
	PrivateDNSZone = "privatelink." + DNSSuffix
)

func privateLinkResource(server *serverDoc) privateLinkResourceDoc {
	return privateLinkResourceDoc{
		ID: server.ID + "/privateLinkResources/" + GroupID, Name: GroupID, Type: typePrivateLink,
		Properties: privateLinkResourceProps{
			GroupID: GroupID, RequiredMembers: []string{GroupID}, RequiredZoneNames: []string{PrivateDNSZone},
		},
	}
}

func (p *Provider) loadServer(ctx context.Context, id arm.ResourceID) (*serverDoc, error) {
	var server serverDoc
	ok, err := arm.Load(arm.ReadOnly(ctx, p.st), id, &server)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, arm.Errorf(http.StatusNotFound, "ParentResourceNotFound",
			"Can not perform requested operation on nested resource. Parent resource '%s' not found.", id.Name())
	}
	return &server, nil
}

func (p *Provider) listPrivateLinkResources(ctx context.Context, r *arm.Request) ([]any, error) {
	server, err := p.loadServer(ctx, r.ID.Parent())
	if err != nil {
		return nil, err
	}
	return []any{privateLinkResource(server)}, nil
}

func (p *Provider) getPrivateLinkResource(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if !strings.EqualFold(r.ID.Name(), GroupID) {
		return nil, errChildNotFound(r.ID)
	}
	server, err := p.loadServer(ctx, r.ID.Parent())
	if err != nil {
		return nil, err
	}
	return arm.OK(privateLinkResource(server)), nil
}

// PrivateDNSZoneSuffixPath is the tenant-level path of
// PrivateDNSZoneSuffixClient.Get.
const PrivateDNSZoneSuffixPath = "/providers/Microsoft.DBforPostgreSQL/getPrivateDnsZoneSuffix"

// ServePrivateDNSZoneSuffix answers POST PrivateDNSZoneSuffixPath with the
// JSON string "postgres.database.azure.com", the suffix of the private DNS
// zones of servers. arm.Router cannot route it (its paths start with
// /subscriptions), so the daemon mounts this next to the router, behind
// the same authentication; it needs no store.
func ServePrivateDNSZoneSuffix(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		arm.WriteError(w, r, nil, arm.Errorf(http.StatusMethodNotAllowed, "MethodNotAllowed",
			"The %s method is not supported for getPrivateDnsZoneSuffix; use POST.", r.Method))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(DNSSuffix)
}
