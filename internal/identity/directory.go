package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/privlink/privlink/internal/store"
)

// Tenant is a directory: the home of principals and subscriptions.
type Tenant struct {
	ID          string    `json:"tenantId"`
	DisplayName string    `json:"displayName"`
	CreatedAt   time.Time `json:"createdAt"`
}

// SubscriptionStateEnabled is the state of every privlink subscription.
const SubscriptionStateEnabled = "Enabled"

// Subscription is an ARM subscription, owned by one tenant.
type Subscription struct {
	ID          string    `json:"subscriptionId"`
	TenantID    string    `json:"tenantId"`
	DisplayName string    `json:"displayName"`
	State       string    `json:"state"`
	CreatedAt   time.Time `json:"createdAt"`
}

// ARMSubscription is the ARM JSON shape of a subscription
// (GET /subscriptions/{id}).
type ARMSubscription struct {
	ID                   string                  `json:"id"`
	AuthorizationSource  string                  `json:"authorizationSource"`
	ManagedByTenants     []any                   `json:"managedByTenants"`
	SubscriptionID       string                  `json:"subscriptionId"`
	TenantID             string                  `json:"tenantId"`
	DisplayName          string                  `json:"displayName"`
	State                string                  `json:"state"`
	SubscriptionPolicies ARMSubscriptionPolicies `json:"subscriptionPolicies"`
}

// ARMSubscriptionPolicies is the subscriptionPolicies object of a
// subscription.
type ARMSubscriptionPolicies struct {
	LocationPlacementID string `json:"locationPlacementId"`
	QuotaID             string `json:"quotaId"`
	SpendingLimit       string `json:"spendingLimit"`
}

// ARMJSON renders the subscription in ARM's shape.
func (s Subscription) ARMJSON() ARMSubscription {
	return ARMSubscription{
		ID:                  "/subscriptions/" + s.ID,
		AuthorizationSource: "RoleBased",
		ManagedByTenants:    []any{},
		SubscriptionID:      s.ID,
		TenantID:            s.TenantID,
		DisplayName:         s.DisplayName,
		State:               s.State,
		SubscriptionPolicies: ARMSubscriptionPolicies{
			LocationPlacementID: "Public_2014-09-01",
			QuotaID:             "PayAsYouGo_2014-09-01",
			SpendingLimit:       "Off",
		},
	}
}

// ServicePrincipal is an application identity that signs in with the
// client-credentials grant. ClientID is the application (client) id.
type ServicePrincipal struct {
	ObjectID    string `json:"objectId"`
	ClientID    string `json:"clientId"`
	TenantID    string `json:"tenantId"`
	DisplayName string `json:"displayName"`
	// Admin gates privlink's own administrative calls (creating
	// principals). It confers nothing in ARM authorization.
	Admin bool `json:"admin"`
	// HomeSubscriptionID is the subscription created with the principal,
	// on which it was made Owner.
	HomeSubscriptionID string    `json:"homeSubscriptionId,omitempty"`
	CreatedAt          time.Time `json:"createdAt"`
}

// principalRecord is the stored principal.
type principalRecord struct {
	ServicePrincipal
	// SecretHash is base64url(SHA-256(secret)). Secrets are 32 random
	// bytes (256 bits of entropy), so a fast hash is enough: a slow
	// password hash only helps against guessing low-entropy secrets, and
	// a constant-time compare of the digests leaks nothing useful.
	SecretHash string `json:"secretHash"`
}

// Credentials is what a client needs to drive privlink with the Azure SDK.
// The JSON keys are part of privlink's interface (credentials.json).
type Credentials struct {
	TenantID       string `json:"tenantId"`
	SubscriptionID string `json:"subscriptionId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
	ARMEndpoint    string `json:"armEndpoint"`
	AuthorityHost  string `json:"authorityHost"`
	Audience       string `json:"audience"`
	CAFile         string `json:"caFile"`
}

// CreatePrincipalOptions parameterizes CreatePrincipal.
type CreatePrincipalOptions struct {
	// NewTenant puts the principal (and its subscription) in a brand-new
	// tenant instead of the default one.
	NewTenant bool
	// DisplayName of the principal; a name is generated if empty.
	DisplayName string
}

func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// secretMatches compares in constant time (see principalRecord.SecretHash).
func (p *principalRecord) secretMatches(secret string) bool {
	return subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(p.SecretHash)) == 1
}

// newIdentity is everything Bootstrap or CreatePrincipal writes, generated
// before the transaction so that a retried transaction writes the same.
type newIdentity struct {
	tenant    Tenant
	sub       Subscription
	principal principalRecord
	secret    string
	owner     RoleAssignment
}

func (s *Service) newIdentity(displayName string, admin bool) newIdentity {
	now := s.now().UTC()
	n := newIdentity{
		tenant: Tenant{ID: newGUID(), CreatedAt: now},
		secret: newSecret(),
	}
	n.sub = Subscription{ID: newGUID(), State: SubscriptionStateEnabled, CreatedAt: now}
	oid := newGUID()
	if displayName == "" {
		displayName = "privlink-sp-" + oid[:8]
	}
	n.sub.DisplayName = displayName + " subscription"
	n.principal = principalRecord{
		ServicePrincipal: ServicePrincipal{
			ObjectID:           oid,
			ClientID:           newGUID(),
			DisplayName:        displayName,
			Admin:              admin,
			HomeSubscriptionID: n.sub.ID,
			CreatedAt:          now,
		},
		SecretHash: hashSecret(n.secret),
	}
	n.owner = RoleAssignment{
		Name:             newGUID(),
		Scope:            "/subscriptions/" + n.sub.ID,
		RoleDefinitionID: "/subscriptions/" + n.sub.ID + "/providers/Microsoft.Authorization/roleDefinitions/" + OwnerRoleID,
		PrincipalID:      oid,
		PrincipalType:    PrincipalTypeServicePrincipal,
		CreatedOn:        now,
		UpdatedOn:        now,
	}
	return n
}

// writeIdentityTx writes the subscription, principal and its Owner
// assignment of n into tenant tenantID. If createTenant, it writes the
// tenant too.
func (s *Service) writeIdentityTx(tx store.Tx, n *newIdentity, tenantID string, createTenant bool) error {
	if createTenant {
		n.tenant.ID = tenantID
		if err := txPutJSON(tx, prefixTenants+tenantID, n.tenant); err != nil {
			return err
		}
	}
	n.sub.TenantID = tenantID
	n.principal.TenantID = tenantID
	if err := txPutJSON(tx, prefixSubs+n.sub.ID, n.sub); err != nil {
		return err
	}
	if err := txPutJSON(tx, prefixPrincipals+n.principal.ObjectID, n.principal); err != nil {
		return err
	}
	if err := tx.Put(prefixClients+n.principal.ClientID, []byte(n.principal.ObjectID)); err != nil {
		return err
	}
	n.owner.CreatedBy = n.principal.ObjectID
	n.owner.UpdatedBy = n.principal.ObjectID
	_, err := s.createRoleAssignmentTx(tx, &n.owner)
	return err
}

func (s *Service) credentials(n newIdentity, caFile string) Credentials {
	return Credentials{
		TenantID:       n.principal.TenantID,
		SubscriptionID: n.sub.ID,
		ClientID:       n.principal.ClientID,
		ClientSecret:   n.secret,
		ARMEndpoint:    s.baseURL,
		AuthorityHost:  s.baseURL + "/",
		Audience:       s.audience,
		CAFile:         caFile,
	}
}

// Bootstrap makes sure an admin principal exists. If none does, it creates
// the default tenant (unless one exists), a subscription and an admin
// service principal that is Owner of it, and returns the credentials with
// the clear secret (the only time the secret exists in clear) and
// created=true. Otherwise it returns created=false and empty credentials:
// the caller keeps the credentials file it wrote the first time.
func (s *Service) Bootstrap(ctx context.Context, caFile string) (Credentials, bool, error) {
	n := s.newIdentity("privlink-admin", true)
	n.tenant.DisplayName = "privlink default tenant"
	n.sub.DisplayName = "privlink default subscription"
	var created bool
	_, err := s.st.Txn(ctx, func(tx store.Tx) error {
		created = false
		kvs, err := tx.List(prefixPrincipals)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var p principalRecord
			if err := json.Unmarshal(kv.Value, &p); err != nil {
				return fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			if p.Admin {
				return nil
			}
		}
		tenantID, createTenant := n.tenant.ID, true
		if kv, err := tx.Get(keyDefaultTenant); err == nil {
			tenantID, createTenant = string(kv.Value), false
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		} else if err := tx.Put(keyDefaultTenant, []byte(tenantID)); err != nil {
			return err
		}
		if err := s.writeIdentityTx(tx, &n, tenantID, createTenant); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return Credentials{}, false, fmt.Errorf("identity: bootstrap: %w", err)
	}
	if !created {
		return Credentials{}, false, nil
	}
	s.log.Info("bootstrapped identity", "tenant", n.principal.TenantID, "subscription", n.sub.ID,
		"clientId", n.principal.ClientID, "objectId", n.principal.ObjectID)
	return s.credentials(n, caFile), true, nil
}

// CreatePrincipal creates a service principal together with a new
// subscription of its own on which it is Owner, in the default tenant or
// (opts.NewTenant) in a brand-new tenant. It returns the credentials with
// the clear secret. Bootstrap must have run first.
func (s *Service) CreatePrincipal(ctx context.Context, opts CreatePrincipalOptions, caFile string) (Credentials, error) {
	n := s.newIdentity(opts.DisplayName, false)
	n.tenant.DisplayName = n.principal.DisplayName + " tenant"
	_, err := s.st.Txn(ctx, func(tx store.Tx) error {
		if opts.NewTenant {
			return s.writeIdentityTx(tx, &n, n.tenant.ID, true)
		}
		kv, err := tx.Get(keyDefaultTenant)
		if errors.Is(err, store.ErrNotFound) {
			return errors.New("no default tenant; bootstrap first")
		}
		if err != nil {
			return err
		}
		return s.writeIdentityTx(tx, &n, string(kv.Value), false)
	})
	if err != nil {
		return Credentials{}, fmt.Errorf("identity: create principal: %w", err)
	}
	s.log.Info("created service principal", "tenant", n.principal.TenantID, "subscription", n.sub.ID,
		"clientId", n.principal.ClientID, "objectId", n.principal.ObjectID, "displayName", n.principal.DisplayName)
	return s.credentials(n, caFile), nil
}

// DeletePrincipal removes a service principal: its tokens stop
// authenticating at once. Its role assignments stay, as in Azure, where
// they show an unknown principal.
func (s *Service) DeletePrincipal(ctx context.Context, objectID string) error {
	oid := normalizeID(objectID)
	_, err := s.st.Txn(ctx, func(tx store.Tx) error {
		var p principalRecord
		if err := txGetJSON(tx, prefixPrincipals+oid, &p); err != nil {
			return err
		}
		if err := tx.Delete(prefixPrincipals + oid); err != nil {
			return err
		}
		return tx.Delete(prefixClients + p.ClientID)
	})
	if err != nil {
		return fmt.Errorf("identity: delete principal %s: %w", objectID, err)
	}
	return nil
}

// GetTenant returns a tenant by id, or ErrNotFound.
func (s *Service) GetTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	if !IsGUID(id) {
		return t, fmt.Errorf("identity: tenant %q: %w", id, ErrNotFound)
	}
	if err := getJSON(ctx, s.st, prefixTenants+normalizeID(id), &t); err != nil {
		return Tenant{}, fmt.Errorf("identity: tenant %s: %w", id, err)
	}
	return t, nil
}

// DefaultTenantID returns the id of the tenant Bootstrap created, or
// ErrNotFound before bootstrap.
func (s *Service) DefaultTenantID(ctx context.Context) (string, error) {
	kv, err := s.st.Get(ctx, keyDefaultTenant)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("identity: default tenant: %w", ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("identity: default tenant: %w", err)
	}
	return string(kv.Value), nil
}

// ListTenants returns every tenant, sorted by id.
func (s *Service) ListTenants(ctx context.Context) ([]Tenant, error) {
	return listJSON[Tenant](ctx, s.st, prefixTenants)
}

// GetSubscription returns a subscription by id, or ErrNotFound.
func (s *Service) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	var sub Subscription
	if !IsGUID(id) {
		return sub, fmt.Errorf("identity: subscription %q: %w", id, ErrNotFound)
	}
	if err := getJSON(ctx, s.st, prefixSubs+normalizeID(id), &sub); err != nil {
		return Subscription{}, fmt.Errorf("identity: subscription %s: %w", id, err)
	}
	return sub, nil
}

// ListSubscriptions returns every subscription of every tenant, sorted by
// id. ARM's GET /subscriptions shows a caller only those where
// Grants.AnyIn holds.
func (s *Service) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	return listJSON[Subscription](ctx, s.st, prefixSubs)
}

// GetPrincipalByObjectID returns a service principal, or ErrNotFound.
func (s *Service) GetPrincipalByObjectID(ctx context.Context, objectID string) (ServicePrincipal, error) {
	p, err := s.principal(ctx, objectID)
	if err != nil {
		return ServicePrincipal{}, err
	}
	return p.ServicePrincipal, nil
}

// ListPrincipals returns every service principal, sorted by object id.
func (s *Service) ListPrincipals(ctx context.Context) ([]ServicePrincipal, error) {
	recs, err := listJSON[principalRecord](ctx, s.st, prefixPrincipals)
	if err != nil {
		return nil, err
	}
	out := make([]ServicePrincipal, len(recs))
	for i, r := range recs {
		out[i] = r.ServicePrincipal
	}
	return out, nil
}

func (s *Service) principal(ctx context.Context, objectID string) (principalRecord, error) {
	var p principalRecord
	if !IsGUID(objectID) {
		return p, fmt.Errorf("identity: principal %q: %w", objectID, ErrNotFound)
	}
	if err := getJSON(ctx, s.st, prefixPrincipals+normalizeID(objectID), &p); err != nil {
		return principalRecord{}, fmt.Errorf("identity: principal %s: %w", objectID, err)
	}
	return p, nil
}

func (s *Service) principalByClientID(ctx context.Context, clientID string) (principalRecord, error) {
	if !IsGUID(clientID) {
		return principalRecord{}, fmt.Errorf("identity: client %q: %w", clientID, ErrNotFound)
	}
	kv, err := s.st.Get(ctx, prefixClients+normalizeID(clientID))
	if errors.Is(err, store.ErrNotFound) {
		return principalRecord{}, fmt.Errorf("identity: client %s: %w", clientID, ErrNotFound)
	}
	if err != nil {
		return principalRecord{}, fmt.Errorf("identity: client %s: %w", clientID, err)
	}
	return s.principal(ctx, string(kv.Value))
}

func listJSON[T any](ctx context.Context, st store.Store, prefix string) ([]T, error) {
	kvs, _, err := st.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("identity: list %s: %w", prefix, err)
	}
	out := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("identity: decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// WriteCredentialsFile writes c as indented JSON to path, atomically
// (temporary file, fsync, rename) and with mode 0600.
func WriteCredentialsFile(path string, c Credentials) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("identity: encode credentials: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("identity: write credentials: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("identity: write credentials %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// ReadCredentialsFile reads a file written by WriteCredentialsFile.
func ReadCredentialsFile(path string) (Credentials, error) {
	var c Credentials
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("identity: read credentials: %w", err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("identity: decode credentials %s: %w", path, err)
	}
	return c, nil
}
