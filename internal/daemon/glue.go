package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/privlink/privlink/internal/addrpool"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/store"
)

// directory adapts the identity service to what the ARM router needs.
type directory struct{ ids *identity.Service }

func (d directory) Authenticate(r *http.Request) (*arm.Caller, error) {
	p, err := d.ids.Authenticate(r)
	if err != nil {
		return nil, toARM(err)
	}
	g, err := d.ids.Grants(r.Context(), p)
	if err != nil {
		return nil, fmt.Errorf("load role assignments of %s: %w", p.ObjectID, err)
	}
	c := &arm.Caller{TenantID: p.TenantID, ObjectID: p.ObjectID, ClientID: p.ClientID, Grants: g}
	aux, err := d.ids.AuthenticateAuxiliary(r)
	if err != nil {
		return nil, toARM(err)
	}
	for _, a := range aux {
		ag, err := d.ids.Grants(r.Context(), a)
		if err != nil {
			return nil, fmt.Errorf("load role assignments of %s: %w", a.ObjectID, err)
		}
		c.Auxiliary = append(c.Auxiliary, &arm.Caller{TenantID: a.TenantID, ObjectID: a.ObjectID, ClientID: a.ClientID, Grants: ag})
	}
	return c, nil
}

func (d directory) SubscriptionExists(ctx context.Context, id string) (bool, error) {
	_, err := d.ids.GetSubscription(ctx, id)
	if errors.Is(err, identity.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (d directory) ListSubscriptions(ctx context.Context) ([]arm.Subscription, error) {
	subs, err := d.ids.ListSubscriptions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]arm.Subscription, len(subs))
	for i, s := range subs {
		out[i] = arm.Subscription{ID: "/subscriptions/" + s.ID, SubscriptionID: s.ID, TenantID: s.TenantID,
			DisplayName: s.DisplayName, State: s.State}
	}
	return out, nil
}

// toARM converts identity's typed errors to ARM errors.
func toARM(err error) error {
	if status, code, msg, ok := identity.AsError(err); ok {
		return &arm.Error{Status: status, Code: code, Message: msg}
	}
	return err
}

type principalKey struct{}

// authenticated lets through any authenticated principal (tenant-level
// ARM calls that need no role).
func authenticated(ids *identity.Service, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := ids.Authenticate(r); err != nil {
			writeErr(w, r, toARM(err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminOnly lets through only the operator principal (the one in
// credentials.json) to privlink's own administrative calls.
func adminOnly(ids *identity.Service, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := ids.Authenticate(r)
		if err != nil {
			writeErr(w, r, toARM(err))
			return
		}
		if !p.Admin {
			writeErr(w, r, arm.Errorf(http.StatusForbidden, "AuthorizationFailed",
				"Only privlink's operator principal (DATA/credentials.json) may use privlink's own administrative API (principals, internet hosts, sites): run the command with that principal's credentials."))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// principalsHandler creates a principal: POST /privlink/v1/principals
// with {"newTenant": bool, "displayName": "..."}; it answers with the new
// principal's credentials (the only time its secret is shown).
func principalsHandler(ids *identity.Service, caPath string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			NewTenant   bool   `json:"newTenant"`
			DisplayName string `json:"displayName"`
		}
		if r.ContentLength != 0 {
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil {
				writeErr(w, r, arm.InvalidRequestContent(err))
				return
			}
		}
		creds, err := ids.CreatePrincipal(r.Context(), identity.CreatePrincipalOptions{NewTenant: in.NewTenant, DisplayName: in.DisplayName}, caPath)
		if err != nil {
			writeErr(w, r, toARM(err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(creds)
	})
}

// writeErr answers err as an ARM error body (arm.WriteError).
func writeErr(w http.ResponseWriter, r *http.Request, err error) { arm.WriteError(w, r, nil, err) }

// internetHostsHandler asks for an internet host: POST
// /privlink/v1/internet-hosts with {"address":"198.18.7.9"} records it
// (controller.RequestInternetHost) and answers, once the internet hosts
// controller has built it, {"namespace": "..."} for `privlink exec
// --internet`.
func internetHostsHandler(fab *fabric.Fabric, st store.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fab == nil {
			writeErr(w, r, arm.Errorf(http.StatusNotImplemented, "FabricUnavailable", "privlinkd runs without root, so it has no namespaces; restart it as root."))
			return
		}
		var in struct {
			Address string `json:"address"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil {
			writeErr(w, r, arm.InvalidRequestContent(err))
			return
		}
		addr, err := netip.ParseAddr(in.Address)
		if err != nil || !fabric.InternetPrefix.Contains(addr) || addr == fabric.InternetGateway {
			writeErr(w, r, arm.InvalidParameter("address", "'%s' is not an internet host address: use one from %s other than %s.", in.Address, fabric.InternetPrefix, fabric.InternetGateway))
			return
		}
		// An address something holds (a server's public address, a public
		// IP address resource, a site's gateway) is not an internet host's:
		// two links would claim its route in the internet router.
		if kv, err := st.Get(r.Context(), addrpool.Key(addr)); err == nil {
			writeErr(w, r, arm.Conflict("PublicIPAddressInUse", "The address %s is in use by %s: choose another address of %s for the internet host.", addr, kv.Value, fabric.InternetPrefix))
			return
		} else if !errors.Is(err, store.ErrNotFound) {
			writeErr(w, r, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		h, err := controller.RequestInternetHost(ctx, st, addr)
		switch {
		case err != nil && ctx.Err() != nil:
			writeErr(w, r, arm.Errorf(http.StatusGatewayTimeout, "InternetHostNotReady",
				"The internet host %s was not built within 30 s; privlinkd's log says why. Try again.", addr))
			return
		case err != nil:
			writeErr(w, r, err)
			return
		case h.Error != "":
			writeErr(w, r, arm.Errorf(http.StatusInternalServerError, "InternetHostFailed", "The internet host %s could not be built: %s", addr, h.Error))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"namespace": h.Namespace})
	})
}
