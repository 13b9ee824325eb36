package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// Flexible servers: create (PUT), update (PUT on an existing server or
// PATCH), get, list, delete. A create is long-running (202); an update is
// long-running when the controller must act on it (a new administrator
// password, public network access) and synchronous (200) when it only
// changes the ARM document (tags, sku, storage, backup, maintenance
// window, authConfig).

func (p *Provider) getServer(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rd := arm.ReadOnly(ctx, p.st)
	var doc serverDoc
	ok, err := arm.Load(rd, r.ID, &doc)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errServerNotFound(r.ID)
	}
	v, err := view(rd, &doc)
	if err != nil {
		return nil, err
	}
	return arm.OK(v), nil
}

func (p *Provider) listServers(ctx context.Context, r *arm.Request) ([]any, error) {
	rd := arm.ReadOnly(ctx, p.st)
	docs, err := arm.LoadAll[serverDoc](rd, r.ID)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(docs))
	for i := range docs {
		v, err := view(rd, &docs[i])
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// view composes a server's GET body from its document: the parts computed
// at read time (earliestRestoreDate, privateEndpointConnections).
func view(r arm.Reader, doc *serverDoc) (*serverDoc, error) {
	v := *doc
	id, err := arm.ParseID(doc.ID)
	if err != nil {
		return nil, fmt.Errorf("stored server has a bad id %q: %w", doc.ID, err)
	}
	conns, err := privatelink.Views(r, id)
	if err != nil {
		return nil, err
	}
	v.Properties.PrivateEndpointConnections = conns
	if sd := v.SystemData; sd != nil {
		earliest := time.Now().UTC().AddDate(0, 0, -int(v.Properties.Backup.BackupRetentionDays))
		if earliest.Before(sd.CreatedAt) {
			earliest = sd.CreatedAt
		}
		v.Properties.Backup.EarliestRestoreDate = &earliest
	}
	return &v, nil
}

// newPassword validates a requested administrator password (all but the
// rule against the login, which needs the stored login) and computes its
// verifier, outside the transaction: hashing takes a few milliseconds.
func newPassword(in *serverIn) (password *string, verifier string, err error) {
	if in.Properties == nil || in.Properties.AdministratorLoginPassword == nil {
		return nil, "", nil
	}
	pw := *in.Properties.AdministratorLoginPassword
	if err := validatePassword(pw, ""); err != nil {
		return nil, "", err
	}
	v, err := NewVerifier(pw)
	if err != nil {
		return nil, "", err
	}
	return &pw, v, nil
}

func (p *Provider) putServer(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in serverIn
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.ValidateLocation(in.Location); err != nil {
		return nil, err
	}
	if err := arm.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	pw, verifier, err := newPassword(&in)
	if err != nil {
		return nil, err
	}
	var resp *arm.Response
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		resp = nil
		var cur serverDoc
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, ""); err != nil {
			return err
		}
		if !exists {
			resp, err = p.create(tx, r, &in, pw, verifier)
			return err
		}
		if normLocation(*in.Location) != normLocation(cur.Location) {
			return arm.BadRequest("InvalidResourceLocation", "location",
				"The resource '%s' already exists in location '%s' in resource group '%s'. A resource with the same name cannot be created in location '%s'. Delete it first or choose another name.",
				cur.Name, cur.Location, r.ID.ResourceGroup, normLocation(*in.Location))
		}
		resp, err = p.update(tx, r, &cur, &in, pw, verifier, true)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (p *Provider) patchServer(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in serverIn
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	pw, verifier, err := newPassword(&in)
	if err != nil {
		return nil, err
	}
	var resp *arm.Response
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		resp = nil
		var cur serverDoc
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if !exists {
			return errServerNotFound(r.ID)
		}
		if err := r.CheckPreconditions(true, ""); err != nil {
			return err
		}
		resp, err = p.update(tx, r, &cur, &in, pw, verifier, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// create records a new server: its document, its Desired record, its name
// and addresses, and the operation that the controller finishes once the
// cluster runs.
func (p *Provider) create(tx store.Tx, r *arm.Request, in *serverIn, pw *string, verifier string) (*arm.Response, error) {
	name := r.ID.Name()
	if err := validateServerName(name); err != nil {
		return nil, err
	}
	if err := refusedFeature(tx, r.ID, featuresOf(in)); err != nil {
		return nil, err
	}
	if _, dropping, err := LoadDesired(tx, r.ID); err != nil {
		return nil, err
	} else if dropping {
		return nil, arm.Conflict(codeNameTaken,
			"Specified server name is already used: server '%s' is being deleted (state '%s'). Create it again once its delete operation has finished.", name, stateDropping)
	}
	doc, err := p.buildServer(in, nil, r.Caller, pw)
	if err != nil {
		return nil, err
	}
	if err := p.checkEntraVersion(nil, &doc); err != nil {
		return nil, err
	}
	id, err := newID(tx, r.ID)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	doc.ID, doc.Name, doc.Type = id.String(), name, typeServer
	doc.Location, doc.Tags = normLocation(*in.Location), in.Tags
	doc.SystemData = newSystemData(r.Caller, now)
	doc.Properties.FullyQualifiedDomainName = name + "." + DNSSuffix
	doc.Properties.MinorVersion = p.minor[doc.Properties.Version]
	service, public, err := reserve(tx, id)
	if err != nil {
		return nil, err
	}
	d := &Desired{
		ID: id.String(), Name: name, Version: doc.Properties.Version, MinorVersion: doc.Properties.MinorVersion,
		AdminLogin: doc.Properties.AdministratorLogin, AdminVerifier: verifier,
		Running: true, PublicNetworkAccess: doc.Properties.Network.PublicNetworkAccess == enabled,
		ServiceAddr: service, PublicAddr: public,
	}
	if d.Entra, err = entraOf(tx, id, &doc); err != nil {
		return nil, err
	}
	if err := saveDesired(tx, id, d); err != nil {
		return nil, err
	}
	state, done := p.settle(stateProvisioning, stateReady)
	doc.Properties.State = state
	if err := arm.Save(tx, id, &doc); err != nil {
		return nil, err
	}
	op, err := arm.StartOperation(tx, id, doc.Location, done)
	if err != nil {
		return nil, err
	}
	v, err := view(tx, &doc)
	if err != nil {
		return nil, err
	}
	return accepted(v, op), nil
}

// update applies a PUT (put) or PATCH body to an existing server.
func (p *Provider) update(tx store.Tx, r *arm.Request, cur *serverDoc, in *serverIn, pw *string, verifier string, put bool) (*arm.Response, error) {
	id, err := arm.ParseID(cur.ID)
	if err != nil {
		return nil, fmt.Errorf("stored server %s has a bad id %q: %w", r.ID, cur.ID, err)
	}
	f := featuresOf(in)
	f.fromVersion = cur.Properties.Version
	if err := refusedFeature(tx, id, f); err != nil {
		return nil, err
	}
	next, err := p.buildServer(in, cur, r.Caller, pw)
	if err != nil {
		return nil, err
	}
	if put || in.Tags != nil {
		next.Tags = in.Tags
	}
	if next.SKU != nil && (cur.SKU == nil || next.SKU.Name != cur.SKU.Name) {
		if err := settingsFit(tx, id, limitsOf(&next)); err != nil {
			return nil, err
		}
	}
	d, err := loadDesiredOf(tx, id)
	if err != nil {
		return nil, err
	}
	if pw != nil && VerifyPassword(d.AdminVerifier, *pw) {
		pw = nil // the same password again: nothing to do
	}
	upgrade := next.Properties.Version != cur.Properties.Version
	if upgrade {
		if err := p.checkUpgrade(cur, next.Properties.Version); err != nil {
			return nil, err
		}
		next.Properties.MinorVersion = p.minor[next.Properties.Version]
	}
	if err := p.checkEntraVersion(cur, &next); err != nil {
		return nil, err
	}
	entra, err := entraOf(tx, id, &next)
	if err != nil {
		return nil, err
	}
	desiredChange := pw != nil || upgrade ||
		next.Properties.AdministratorLogin != cur.Properties.AdministratorLogin ||
		next.Properties.Network.PublicNetworkAccess != cur.Properties.Network.PublicNetworkAccess ||
		!sameEntra(entra, d.Entra)
	if desiredChange || !sameProperties(cur, &next) {
		if err := errServerState(cur.Name, cur.Properties.State, "Update"); err != nil {
			return nil, err
		}
	}
	touch(next.SystemData, r.Caller, time.Now().UTC())
	if !desiredChange {
		if err := arm.Save(tx, id, &next); err != nil {
			return nil, err
		}
		v, err := view(tx, &next)
		if err != nil {
			return nil, err
		}
		return arm.OK(v), nil
	}
	d.AdminLogin = next.Properties.AdministratorLogin
	if pw != nil {
		d.AdminVerifier = verifier
	}
	d.PublicNetworkAccess = next.Properties.Network.PublicNetworkAccess == enabled
	d.Version, d.MinorVersion = next.Properties.Version, next.Properties.MinorVersion
	d.Entra = entra
	if err := saveDesired(tx, id, d); err != nil {
		return nil, err
	}
	state, done := p.settle(stateUpdating, steadyState(d.Running))
	next.Properties.State = state
	if err := arm.Save(tx, id, &next); err != nil {
		return nil, err
	}
	op, err := arm.StartOperation(tx, id, next.Location, done)
	if err != nil {
		return nil, err
	}
	v, err := view(tx, &next)
	if err != nil {
		return nil, err
	}
	return accepted(v, op), nil
}

// sameProperties reports whether an update leaves everything but the tags
// and systemData as it was.
func sameProperties(a, b *serverDoc) bool {
	strip := func(d *serverDoc) []byte {
		c := *d
		c.Tags, c.SystemData = nil, nil
		buf, _ := json.Marshal(c)
		return buf
	}
	return bytes.Equal(strip(a), strip(b))
}

// buildServer merges a PUT or PATCH body into the current server (nil on
// create) and validates the result as Azure does. It leaves the envelope
// (id, name, location, tags, systemData) and the state to its callers.
func (p *Provider) buildServer(in *serverIn, cur *serverDoc, caller *arm.Caller, password *string) (serverDoc, error) {
	var doc serverDoc
	if cur == nil {
		doc.Properties = serverProps{
			AuthConfig:        authConfigDoc{ActiveDirectoryAuth: disabled, PasswordAuth: enabled},
			AvailabilityZone:  "1",
			Backup:            backupDoc{BackupRetentionDays: 7, GeoRedundantBackup: disabled},
			DataEncryption:    dataEncryptionDoc{Type: "SystemManaged"},
			HighAvailability:  highAvailabilityDoc{Mode: disabled, State: "NotEnabled"},
			MaintenanceWindow: maintenanceWindowDoc{CustomWindow: disabled},
			Network:           networkDoc{PublicNetworkAccess: enabled},
			Replica:           replicaDoc{Role: "None"},
			ReplicationRole:   "None",
			Version:           p.defaultVersion(),
		}
	} else {
		doc = *cur
		if cur.SystemData != nil {
			sd := *cur.SystemData
			doc.SystemData = &sd
		}
	}
	pr := in.Properties
	if pr == nil {
		pr = &serverPropsIn{}
	}
	var err error
	var curSKU *skuDoc
	var curStorage *storageDoc
	if cur != nil {
		curSKU, curStorage = cur.SKU, &cur.Properties.Storage
	}
	if doc.SKU, err = buildSKU(in.SKU, curSKU); err != nil {
		return doc, err
	}
	if v := strings.TrimSpace(str(pr.Version)); v != "" {
		if !slices.Contains(p.versions, v) {
			return doc, errInvalid("properties.version", "Invalid value given for parameter version: '%s'. This privlink runs PostgreSQL %s; use one of those versions.",
				v, strings.Join(p.versions, ", "))
		}
		doc.Properties.Version = v
	}
	if doc.Properties.Storage, err = buildStorage(pr.Storage, curStorage); err != nil {
		return doc, err
	}
	props := &doc.Properties
	if b := pr.Backup; b != nil && b.BackupRetentionDays != nil {
		n := *b.BackupRetentionDays
		if n < 7 || n > 35 {
			return doc, errInvalid("properties.backup.backupRetentionDays", "Invalid value given for parameter backupRetentionDays: %d. Keep backups 7 to 35 days.", n)
		}
		props.Backup.BackupRetentionDays = n
	}
	if props.AvailabilityZone, err = enumValue("properties.availabilityZone", pr.AvailabilityZone, props.AvailabilityZone, []string{"1", "2", "3"}); err != nil {
		return doc, err
	}
	if err := buildMaintenanceWindow(pr.MaintenanceWindow, &props.MaintenanceWindow); err != nil {
		return doc, err
	}
	if pr.Network != nil {
		if props.Network.PublicNetworkAccess, err = enumValue("properties.network.publicNetworkAccess", pr.Network.PublicNetworkAccess,
			props.Network.PublicNetworkAccess, []string{enabled, disabled}); err != nil {
			return doc, err
		}
	}
	if err := buildAuth(pr, cur, caller, password, props); err != nil {
		return doc, err
	}
	return doc, nil
}

func buildMaintenanceWindow(in *maintenanceWindowIn, mw *maintenanceWindowDoc) error {
	if in == nil {
		return nil
	}
	var err error
	if mw.CustomWindow, err = enumValue("properties.maintenanceWindow.customWindow", in.CustomWindow, mw.CustomWindow, []string{enabled, disabled}); err != nil {
		return err
	}
	for _, f := range []struct {
		name     string
		in       *int32
		out      *int32
		min, max int32
	}{
		{"dayOfWeek", in.DayOfWeek, &mw.DayOfWeek, 0, 6},
		{"startHour", in.StartHour, &mw.StartHour, 0, 23},
		{"startMinute", in.StartMinute, &mw.StartMinute, 0, 59},
	} {
		if f.in == nil {
			continue
		}
		if *f.in < f.min || *f.in > f.max {
			return errInvalid("properties.maintenanceWindow."+f.name, "Invalid value given for parameter %s: %d. It takes %d to %d.", f.name, *f.in, f.min, f.max)
		}
		*f.out = *f.in
	}
	return nil
}

// buildAuth applies authConfig and the administrator login: with password
// authentication enabled a server needs an administrator, set once and
// immutable afterwards, and (when it is first set) a password.
func buildAuth(pr *serverPropsIn, cur *serverDoc, caller *arm.Caller, password *string, props *serverProps) error {
	var err error
	ac := &props.AuthConfig
	if in := pr.AuthConfig; in != nil {
		if ac.ActiveDirectoryAuth, err = enumValue("properties.authConfig.activeDirectoryAuth", in.ActiveDirectoryAuth, ac.ActiveDirectoryAuth, []string{enabled, disabled}); err != nil {
			return err
		}
		if ac.PasswordAuth, err = enumValue("properties.authConfig.passwordAuth", in.PasswordAuth, ac.PasswordAuth, []string{enabled, disabled}); err != nil {
			return err
		}
		if t := strings.TrimSpace(str(in.TenantID)); t != "" {
			ac.TenantID = t
		}
	}
	if ac.ActiveDirectoryAuth == disabled && ac.PasswordAuth == disabled {
		return errInvalid("properties.authConfig", "Invalid value given for parameter authConfig: enable passwordAuth, activeDirectoryAuth or both.")
	}
	if ac.ActiveDirectoryAuth == enabled && ac.TenantID == "" && caller != nil {
		ac.TenantID = caller.TenantID
	}
	login := strings.TrimSpace(str(pr.AdministratorLogin))
	had := cur != nil && cur.Properties.AdministratorLogin != ""
	switch {
	case had && login != "" && login != cur.Properties.AdministratorLogin:
		return errInvalid("properties.administratorLogin", "Invalid value given for parameter administratorLogin: it is '%s' and cannot change once set.", cur.Properties.AdministratorLogin)
	case !had && login != "":
		if err := validateAdminLogin(login); err != nil {
			return err
		}
		props.AdministratorLogin = login
	}
	if ac.PasswordAuth == enabled {
		if props.AdministratorLogin == "" {
			return errMissing("properties.administratorLogin", "With password authentication enabled, the administrator login")
		}
		if !had && password == nil {
			return errMissing("properties.administratorLoginPassword", "The administrator's password")
		}
	}
	if password != nil {
		if props.AdministratorLogin == "" {
			return errMissing("properties.administratorLogin", "A password needs an administrator login: the administrator login")
		}
		return validatePassword(*password, props.AdministratorLogin)
	}
	return nil
}

// deleteServer removes the server's document at once (its children with
// it) and leaves the Desired record to the controller, which removes the
// cluster and then frees the name (Deleted). Without a controller the
// server is forgotten at once.
func (p *Provider) deleteServer(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var cur serverDoc
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, ""); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		id, err := arm.ParseID(cur.ID)
		if err != nil {
			id = r.ID
		}
		if err := p.drop(tx, id, cur.Name); err != nil {
			return err
		}
		if err := arm.Delete(tx, id); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, id, cur.Location, !p.controller)
		return err
	})
	if err != nil {
		return nil, err
	}
	if op == nil {
		return noContent(), nil
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

// drop hands a server that is going away to the controller: its pending
// operations are canceled, its private endpoints show Disconnected (their
// connection documents go with the server's) and its Desired record gets
// a new generation, which without an ARM document means "remove the
// cluster". Without a controller the record goes at once and the name and
// addresses are free.
func (p *Provider) drop(tx store.Tx, id arm.ResourceID, name string) error {
	canceled := arm.Errorf(http.StatusConflict, "OperationCanceled", "The operation was canceled: server '%s' is being deleted.", name)
	if err := arm.FinishOperations(tx, id, canceled); err != nil {
		return err
	}
	if err := privatelink.DisconnectAll(tx, id, fmt.Sprintf("Server '%s' was deleted", name)); err != nil {
		return err
	}
	if !p.controller {
		return forget(tx, id, name)
	}
	d, ok, err := LoadDesired(tx, id)
	if err != nil || !ok {
		return err
	}
	return saveDesired(tx, id, &d)
}

// serverGroupDelete runs when the server's resource group is deleted: the
// server goes as with a DELETE, its cluster removed by the controller,
// its name reserved until then.
func (p *Provider) serverGroupDelete(tx store.Tx, id arm.ResourceID) error {
	var cur serverDoc
	ok, err := arm.Load(tx, id, &cur)
	if err != nil || !ok {
		return err
	}
	return p.drop(tx, id, cur.Name)
}

func newSystemData(c *arm.Caller, now time.Time) *systemData { return arm.NewSystemData(c, now) }

func touch(sd *systemData, c *arm.Caller, now time.Time) { sd.Touch(c, now) }
