package daemon

import (
	"log/slog"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/provider/authorization"
	"github.com/privlink/privlink/internal/provider/dnsresolver"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/provider/privatedns"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/provider/resources"
	"github.com/privlink/privlink/internal/store"
)

// APIOptions are the providers' options: what the controllers running
// beside the API will materialize.
type APIOptions struct {
	Network  []network.Option
	Postgres []postgres.Option
}

// ScopedStore wraps privlinkd's store so that deleting a resource's
// document deletes the role assignments at and under its scope in the same
// transaction (arm.WithScopeHooks). Everything privlinkd runs uses it.
func ScopedStore(raw store.Store) store.Store {
	return arm.WithScopeHooks(raw, identity.DeleteRoleAssignmentsUnder)
}

// NewAPI returns privlinkd's ARM router over st, authenticating through
// ids, with every resource provider registered. Tests build the same API
// with it (daemontest).
func NewAPI(st store.Store, ids *identity.Service, log *slog.Logger, opts APIOptions) *arm.Router {
	router := arm.NewRouter(st, directory{ids}, log)
	var all []*arm.ResourceType
	register := func(ts ...*arm.ResourceType) { router.Register(ts...); all = append(all, ts...) }
	register(resources.New(st, func() []*arm.ResourceType { return all }).Types()...)
	register(authorization.New(ids).Types()...)
	// The kinds of resource a private endpoint may lead to.
	targets := privatelink.NewKinds(postgres.Kind, network.ServiceKind)
	register(network.New(st, append([]network.Option{network.WithTargets(targets)}, opts.Network...)...).Types()...)
	register(privatedns.New(st).Types()...)
	register(dnsresolver.New(st).Types()...)
	register(postgres.New(st, opts.Postgres...).Types()...)
	return router
}
