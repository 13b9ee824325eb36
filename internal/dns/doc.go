// Package dns is the DNS that answers at 168.63.129.16:53 inside every
// virtual network, and the DNS of the emulated internet.
//
// A Catalog holds what the DNS knows: private DNS zones and their record
// sets, the virtual network links that make a zone visible in a network (a
// view), and the public names that Azure's public DNS would answer, such as
// srv1.postgres.database.azure.com (a CNAME to the privatelink name) and the
// public fallback of srv1.privatelink.postgres.database.azure.com. A
// watcher of the store applies store events to the catalog as whole-object
// upserts and deletes; reads see a consistent, immutable snapshot and never
// wait for writers.
//
// A Server answers queries for one view on sockets that the caller opens
// (inside a network's router namespace; a socket keeps its namespace), for
// as many views at once as the caller serves. The package never touches the
// store or namespaces, and never forwards a query outside, but for the
// conditional forwarders of ServeForwarding (the DNS of a simulated
// on-premises site, which forwards privatelink zones to a DNS private
// resolver's inbound endpoint).
//
// Resolution in a view follows Azure's private DNS: the most specific
// private zone linked to the view that contains the name answers with
// authority (NXDOMAIN or NODATA with the zone's SOA when it lacks the
// data, unless the link's resolution policy is NxDomainRedirect, which
// falls back to public names on NXDOMAIN); names outside every linked zone
// are answered from the public names. CNAME chains are followed inside the
// same view across private and public data. The internet view
// (InternetView) sees public names only.
package dns
