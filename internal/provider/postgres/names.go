package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/privlink/privlink/internal/addrpool"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Server names are DNS labels under postgres.database.azure.com, so they
// are unique across every subscription and tenant: creating a server
// reserves pg/names/{name} → its ARM ID, in the transaction that creates
// it. The same transaction allocates the server's service address (in
// 169.254.0.0/16) and public address (in 198.18.0.0/15), each reserved as
// pg/addrs/{address} → ARM ID. Name and addresses stay reserved while the
// server exists and while its cluster is being removed; ReleaseName frees
// them, from the transaction that completes the deletion.

// Address plan (DESIGN.md): server namespaces use 169.254.0.0/16, whose
// 169.254.0.0/24 privlink keeps for its own links, and not the link-local
// address clouds use for instance metadata; public addresses come from the
// emulated internet's shared pool (addrpool.Public), which public IP
// address resources draw from too.
var (
	servicePool = addrpool.Pool{
		Range:   netip.MustParsePrefix("169.254.0.0/16"),
		Skip:    []netip.Prefix{netip.MustParsePrefix("169.254.0.0/24")},
		Exclude: []netip.Addr{netip.MustParseAddr("169.254.169.254")},
	}
	publicPool = addrpool.Public
)

func nameKey(name string) string { return namePrefix + strings.ToLower(name) }

// nameHolder returns the ARM ID that holds a server name, "" if free.
func nameHolder(r arm.Reader, name string) (string, error) {
	kv, err := r.Get(nameKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read name reservation %s: %w", name, err)
	}
	return string(kv.Value), nil
}

// errNameTaken is Azure's answer to a create with a name in use anywhere.
func errNameTaken(name string) error {
	return arm.Conflict(codeNameTaken, "Specified server name is already used: a server named '%s' exists (server names are global, like their DNS names %s.%s). Choose another name.",
		name, name, DNSSuffix)
}

// reserve takes the server's name and allocates its addresses in tx.
func reserve(tx store.Tx, id arm.ResourceID) (service, public netip.Addr, err error) {
	name := id.Name()
	holder, err := nameHolder(tx, name)
	if err != nil {
		return service, public, err
	}
	if holder != "" {
		return service, public, errNameTaken(name)
	}
	if err := tx.Put(nameKey(name), []byte(id.String())); err != nil {
		return service, public, fmt.Errorf("reserve name %s: %w", name, err)
	}
	used, err := addrpool.Used(tx)
	if err != nil {
		return service, public, err
	}
	if service, err = allocate(tx, id, used, servicePool); err != nil {
		return service, public, err
	}
	public, err = allocate(tx, id, used, publicPool)
	return service, public, err
}

// allocate reserves the lowest free address of pool for the server id.
func allocate(tx store.Tx, id arm.ResourceID, used map[netip.Addr]bool, pool addrpool.Pool) (netip.Addr, error) {
	a, err := pool.Allocate(tx, id.String(), used)
	if errors.Is(err, addrpool.ErrFull) {
		return a, arm.Conflict("ServerLimitReached", "No address is left in %s for another server; delete a server first.", pool.Range)
	}
	return a, err
}

// ReleaseName frees a server name and the addresses of the server that
// held it, inside tx. The postgres controller calls it (through Deleted)
// once it has removed the server's cluster; until then the name stays
// taken, so that no new server can claim the name, the DNS name or the
// addresses of a cluster that still runs. Releasing a free name does
// nothing; releasing the name of a server whose ARM document still exists
// is an error.
func ReleaseName(tx store.Tx, name string) error {
	holder, err := nameHolder(tx, name)
	if err != nil || holder == "" {
		return err
	}
	if id, err := arm.ParseID(holder); err == nil {
		ok, err := arm.Exists(tx, id)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("release name %s: server %s still exists", name, holder)
		}
	}
	return releaseName(tx, name, "")
}

// releaseName frees a name and its holder's addresses without asking
// whether the holder still exists (a resource group delete releases them
// before it removes the documents). With want set, it releases only a
// name that server holds.
func releaseName(tx store.Tx, name, want string) error {
	holder, err := nameHolder(tx, name)
	if err != nil || holder == "" || (want != "" && !strings.EqualFold(holder, want)) {
		return err
	}
	if err := tx.Delete(nameKey(name)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("release name %s: %w", name, err)
	}
	return addrpool.Release(tx, holder)
}

// checkNameAvailability answers POST .../checkNameAvailability, at
// subscription or location level: whether a server could be created with
// the name anywhere.
func (p *Provider) checkNameAvailability(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in nameAvailabilityIn
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	name := str(in.Name)
	if name == "" {
		return nil, errMissing("name", "The name to check")
	}
	typ := str(in.Type)
	if typ == "" {
		typ = typeServer
	}
	if !strings.EqualFold(typ, typeServer) {
		return nil, errInvalid("type", "Invalid value given for parameter type: '%s'. privlink checks names of type %s.", typ, typeServer)
	}
	out := nameAvailability{Name: name, Type: typeServer, NameAvailable: true}
	switch holder, err := nameHolder(arm.ReadOnly(ctx, p.st), name); {
	case !validServerName(name):
		out.NameAvailable, out.Reason, out.Message = false, "Invalid", invalidServerName
	case err != nil:
		return nil, err
	case holder != "":
		out.NameAvailable, out.Reason, out.Message = false, "AlreadyExists", "Specified server name is already used."
	}
	return &arm.Response{Status: http.StatusOK, Body: out}, nil
}
