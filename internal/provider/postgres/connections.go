package postgres

import (
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
)

// Private endpoint connections of servers are the shared workflow of
// internal/provider/privatelink: this provider registers a flexible
// server as a kind of private-link resource (Kind) and serves the
// connections type it makes (privatelink.ConnectionsType).

// Kind is a flexible server as a private-link resource: one group,
// postgresqlServer, whose records belong in
// privatelink.postgres.database.azure.com.
var Kind = &privatelink.Kind{
	Type: typeServer, Title: "flexible server", Noun: "server",
	GroupID: GroupID, Zone: PrivateDNSZone, DNSSuffix: DNSSuffix,
	Lookup: lookupTarget, PublicAt: publicAt,
}

// lookupTarget reads server id for a private endpoint that targets it:
// nil when there is no such server. (privatelink.Kinds.Lookup fills in
// the target's Kind.)
func lookupTarget(r arm.Reader, id arm.ResourceID) (*privatelink.Target, error) {
	if !strings.EqualFold(id.Type(), typeServer) || len(id.Names) != 1 || id.ResourceGroup == "" || id.Scope != nil {
		return nil, nil
	}
	var doc serverDoc
	ok, err := arm.Load(r, id, &doc)
	if err != nil || !ok {
		return nil, err
	}
	canon, err := arm.ParseID(doc.ID)
	if err != nil {
		canon = id
	}
	fqdn := doc.Properties.FullyQualifiedDomainName
	if fqdn == "" {
		fqdn = doc.Name + "." + DNSSuffix
	}
	return &privatelink.Target{ID: canon, Name: doc.Name, FQDN: fqdn}, nil
}
