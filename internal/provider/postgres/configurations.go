package postgres

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Configurations (server parameters). The catalog below is the set of
// PostgreSQL settings privlink lets users change, in Azure's shape. A
// setting the user changed is stored as a child document of the server
// (configOverride); every other one has its default.
//
// What PostgreSQL runs with is DefaultSettings() overlaid with
// Desired.Settings. A dynamic setting goes into Desired.Settings at once
// (the controller reloads). A static one (max_connections, shared_buffers)
// is only recorded: it reaches Desired.Settings with the next restart or
// start action, and until then the configuration reports
// isConfigPendingRestart — the stored value differs from the one in
// Desired.Settings.

// Configuration sources.
const (
	sourceUser    = "user-override"
	sourceDefault = "system-default"
)

// Configuration data types.
const (
	dtBoolean     = "Boolean"
	dtInteger     = "Integer"
	dtNumeric     = "Numeric"
	dtEnumeration = "Enumeration"
	dtString      = "String"
)

// setting is one configurable PostgreSQL setting.
type setting struct {
	name        string
	description string
	dataType    string
	def         string
	unit        string
	dynamic     bool
	min, max    float64  // Integer and Numeric
	values      []string // Boolean and Enumeration
	allowed     string   // allowedValues for String settings
	check       func(string) bool
	docs        string // PostgreSQL docs page, or a full URL
	// memoryMax, when set, bounds an Integer setting by the memory of
	// the server's compute size: the largest value a size with gib GiB
	// allows. memoryRule says how, for messages.
	memoryMax  func(gib int64) int64
	memoryRule string
	// only, when set, is the one value privlink takes of a setting whose
	// other values Azure allows but privlink cannot honour; onlyWhy says
	// why, for messages.
	only, onlyWhy string
}

// limits is what bounds a server's settings beyond the catalog: its
// compute size and that size's memory (0 when unknown, which leaves the
// catalog's bounds).
type limits struct {
	sku    string
	memGiB int64
}

// limitsOf returns the limits of a server.
func limitsOf(doc *serverDoc) limits {
	if doc.SKU == nil {
		return limits{}
	}
	gib, _ := skuMemoryGiB(doc.SKU.Name)
	return limits{sku: doc.SKU.Name, memGiB: gib}
}

// pagesPerGiB is the number of 8 kB pages (PostgreSQL's block size, the
// unit of shared_buffers) in a GiB.
const pagesPerGiB = 1 << 30 / 8192

// sharedBuffersMax is Azure's upper bound of shared_buffers: 75% of the
// compute size's memory ("Allowed values are inside the range of 10% -
// 75% of available memory", Azure's server parameter reference for
// shared_buffers), and never more than PostgreSQL's own maximum.
func sharedBuffersMax(gib int64) int64 { return min(gib*pagesPerGiB*3/4, 1073741823) }

const maxInt32 = math.MaxInt32

// catalog holds the settings, sorted by name as Azure lists them. The
// defaults are PostgreSQL's own, except timezone (UTC, Azure's) and the
// privlink setting require_secure_transport (on, Azure's: only TLS
// connections); the pgbouncer.* ones are Azure's (pgbouncer.go).
var catalog = withPgBouncer([]setting{
	{name: "effective_cache_size", dataType: dtInteger, def: "524288", unit: "8KB", dynamic: true, min: 1, max: maxInt32,
		description: "The planner's assumption about the size of the disk cache available to one query.", docs: "runtime-config-query.html"},
	{name: "idle_in_transaction_session_timeout", dataType: dtInteger, def: "0", unit: "milliseconds", dynamic: true, min: 0, max: maxInt32,
		description: "Ends any session that has been idle within an open transaction for longer than this; 0 disables the timeout.", docs: "runtime-config-client.html"},
	{name: "log_connections", dataType: dtBoolean, def: "off", dynamic: true, values: []string{"on", "off"},
		description: "Logs each attempted connection to the server and each successful authentication.", docs: "runtime-config-logging.html"},
	{name: "log_disconnections", dataType: dtBoolean, def: "off", dynamic: true, values: []string{"on", "off"},
		description: "Logs the end of each session, with its duration.", docs: "runtime-config-logging.html"},
	{name: "log_min_duration_statement", dataType: dtInteger, def: "-1", unit: "milliseconds", dynamic: true, min: -1, max: maxInt32,
		description: "Logs every statement that runs at least this long; -1 disables it, 0 logs all statements.", docs: "runtime-config-logging.html"},
	{name: "log_statement", dataType: dtEnumeration, def: "none", dynamic: true, values: []string{"none", "ddl", "mod", "all"},
		description: "Which SQL statements are logged.", docs: "runtime-config-logging.html"},
	{name: "maintenance_work_mem", dataType: dtInteger, def: "65536", unit: "KB", dynamic: true, min: 1024, max: 2097151,
		description: "The memory one maintenance operation (VACUUM, CREATE INDEX, ALTER TABLE ADD FOREIGN KEY) may use.", docs: "runtime-config-resource.html"},
	{name: "max_connections", dataType: dtInteger, def: "100", dynamic: false, min: 25, max: 5000,
		description: "The maximum number of concurrent connections to the server. Takes effect at the next restart.", docs: "runtime-config-connection.html"},
	{name: "random_page_cost", dataType: dtNumeric, def: "4", dynamic: true, min: 0, max: math.MaxFloat64,
		description: "The planner's estimate of the cost of a nonsequentially fetched disk page.", docs: "runtime-config-query.html"},
	{name: "require_secure_transport", dataType: dtBoolean, def: "on", dynamic: true, values: []string{"on", "off"},
		description: "Whether client connections must use TLS.",
		docs:        "https://learn.microsoft.com/azure/postgresql/flexible-server/security-tls"},
	{name: "shared_buffers", dataType: dtInteger, def: "16384", unit: "8KB", dynamic: false, min: 16, max: 1073741823,
		memoryMax: sharedBuffersMax, memoryRule: "at most 75% of it, in 8 kB pages",
		description: "The memory the server uses for shared memory buffers; at most 75% of the compute size's memory. Takes effect at the next restart.", docs: "runtime-config-resource.html"},
	{name: "statement_timeout", dataType: dtInteger, def: "0", unit: "milliseconds", dynamic: true, min: 0, max: maxInt32,
		description: "Aborts any statement that takes longer than this; 0 disables the timeout.", docs: "runtime-config-client.html"},
	{name: "timezone", dataType: dtString, def: "UTC", dynamic: true, allowed: "[A-Za-z0-9/_+-]+", check: validTimeZone,
		description: "The time zone for displaying and interpreting time stamps, as an IANA name such as UTC or Europe/Paris.", docs: "runtime-config-client.html"},
	{name: "work_mem", dataType: dtInteger, def: "4096", unit: "KB", dynamic: true, min: 64, max: 2097151,
		description: "The memory one query operation (a sort or hash table) may use before spilling to disk.", docs: "runtime-config-resource.html"},
})

// DefaultSettings returns the value of every configurable setting when
// the user changed none: the base the controller overlays Desired.Settings
// on. The values are postgresql.conf values in the settings' units.
func DefaultSettings() map[string]string {
	out := make(map[string]string, len(catalog))
	for _, s := range catalog {
		out[s.name] = s.def
	}
	return out
}

// lookupSetting finds a setting by name, case-insensitively as PostgreSQL
// does.
func lookupSetting(name string) (*setting, bool) {
	for i := range catalog {
		if strings.EqualFold(catalog[i].name, name) {
			return &catalog[i], true
		}
	}
	return nil, false
}

var tzName = regexp.MustCompile(`^[A-Za-z0-9/_+-]{1,64}$`)

// validTimeZone accepts IANA time zone names this machine knows.
func validTimeZone(v string) bool {
	if !tzName.MatchString(v) || strings.Contains(v, "..") {
		return false
	}
	if strings.EqualFold(v, "UTC") || strings.EqualFold(v, "GMT") {
		return true
	}
	_, err := time.LoadLocation(v)
	return err == nil
}

// bounds returns the range of a numeric setting on a server with limits
// l: the catalog's, narrowed by the compute size's memory for a
// memory-bound setting.
func (s *setting) bounds(l limits) (lo, hi float64) {
	lo, hi = s.min, s.max
	if s.memoryMax != nil && l.memGiB > 0 {
		hi = min(hi, float64(s.memoryMax(l.memGiB)))
	}
	return lo, hi
}

// allowedValues renders Azure's allowedValues for a server with limits
// l: "on,off", "25-5000", "16-196608" (shared_buffers on 2 GiB).
func (s *setting) allowedValues(l limits) string {
	switch s.dataType {
	case dtBoolean, dtEnumeration:
		return strings.Join(s.values, ",")
	case dtInteger, dtNumeric:
		lo, hi := s.bounds(l)
		return formatNumber(lo, s.dataType) + "-" + formatNumber(hi, s.dataType)
	}
	return s.allowed
}

// boundBy says, for messages, what bounds a memory-bound setting on a
// server with limits l; "" for other settings.
func (s *setting) boundBy(l limits) string {
	if s.memoryMax == nil || l.memGiB == 0 {
		return ""
	}
	return fmt.Sprintf("compute size %s has %d GiB of memory, and %s takes %s", l.sku, l.memGiB, s.name, s.memoryRule)
}

func formatNumber(f float64, dataType string) string {
	if dataType == dtInteger {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', 6, 64)
}

// normalize validates a value for the setting on a server with limits l
// and returns its canonical form.
func (s *setting) normalize(v string, l limits) (string, error) {
	v = strings.TrimSpace(v)
	bad := func() (string, error) {
		if why := s.boundBy(l); why != "" {
			return "", errInvalid("properties.value", "Invalid value given for parameter %s: '%s'. Allowed values: %s (%s).", s.name, v, s.allowedValues(l), why)
		}
		return "", errInvalid("properties.value", "Invalid value given for parameter %s: '%s'. Allowed values: %s.", s.name, v, s.allowedValues(l))
	}
	lo, hi := s.bounds(l)
	switch s.dataType {
	case dtBoolean, dtEnumeration:
		for _, a := range s.values {
			if strings.EqualFold(v, a) {
				return a, nil
			}
		}
		return bad()
	case dtInteger:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || float64(n) < lo || float64(n) > hi {
			return bad()
		}
		if v := strconv.FormatInt(n, 10); s.only != "" && v != s.only {
			return "", errInvalid("properties.value", "Invalid value given for parameter %s: '%s'. Azure allows %s; privlink takes only %s: %s.",
				s.name, v, s.allowedValues(l), s.only, s.onlyWhy)
		}
		return strconv.FormatInt(n, 10), nil
	case dtNumeric:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < lo || f > hi {
			return bad()
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	}
	if s.check != nil && !s.check(v) {
		return bad()
	}
	return v, nil
}

func (s *setting) docLink(version string) string {
	if strings.HasPrefix(s.docs, "https://") {
		return s.docs
	}
	anchor := "GUC-" + strings.ToUpper(strings.ReplaceAll(s.name, "_", "-"))
	return "https://www.postgresql.org/docs/" + version + "/" + s.docs + "#" + anchor
}

// configView renders one configuration of a server: its override (nil if
// none) and what PostgreSQL runs with now (Desired.Settings).
func configView(server *serverDoc, s *setting, ov *configOverride, running map[string]string) configDoc {
	c := configDoc{
		ID: server.ID + "/configurations/" + s.name, Name: s.name, Type: typeConfig,
		Properties: configProps{
			Value: s.def, Source: sourceDefault, Description: s.description, DefaultValue: s.def,
			DataType: s.dataType, AllowedValues: s.allowedValues(limitsOf(server)), Unit: s.unit,
			IsDynamicConfig: s.dynamic, DocumentationLink: s.docLink(server.Properties.Version),
		},
	}
	if ov != nil {
		c.Properties.Value, c.Properties.Source, c.SystemData = ov.Value, sourceUser, ov.SystemData
	}
	effective, ok := running[s.name]
	if !ok {
		effective = s.def
	}
	c.Properties.IsConfigPendingRestart = !s.dynamic && effective != c.Properties.Value
	return c
}

// serverConfigs loads what configView needs for a server.
func serverConfigs(r arm.Reader, serverID arm.ResourceID) (*serverDoc, map[string]*configOverride, map[string]string, error) {
	var server serverDoc
	ok, err := arm.Load(r, serverID, &server)
	if err != nil {
		return nil, nil, nil, err
	}
	if !ok {
		return nil, nil, nil, arm.Errorf(http.StatusNotFound, "ParentResourceNotFound",
			"Can not perform requested operation on nested resource. Parent resource '%s' not found.", serverID.Name())
	}
	ovs, err := arm.LoadAll[configOverride](r, serverID.ChildCollection("configurations"))
	if err != nil {
		return nil, nil, nil, err
	}
	byName := make(map[string]*configOverride, len(ovs))
	for i := range ovs {
		byName[strings.ToLower(ovs[i].Name)] = &ovs[i]
	}
	id, err := arm.ParseID(server.ID)
	if err != nil {
		id = serverID
	}
	d, _, err := LoadDesired(r, id)
	if err != nil {
		return nil, nil, nil, err
	}
	return &server, byName, d.Settings, nil
}

func (p *Provider) listConfigs(ctx context.Context, r *arm.Request) ([]any, error) {
	server, ovs, running, err := serverConfigs(arm.ReadOnly(ctx, p.st), r.ID.Parent())
	if err != nil {
		return nil, err
	}
	out := make([]any, len(catalog))
	for i := range catalog {
		s := &catalog[i]
		out[i] = configView(server, s, ovs[s.name], running)
	}
	return out, nil
}

func (p *Provider) getConfig(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	s, ok := lookupSetting(r.ID.Name())
	if !ok {
		return nil, errNoSetting(r.ID)
	}
	server, ovs, running, err := serverConfigs(arm.ReadOnly(ctx, p.st), r.ID.Parent())
	if err != nil {
		return nil, err
	}
	return arm.OK(configView(server, s, ovs[s.name], running)), nil
}

func errNoSetting(id arm.ResourceID) error {
	return arm.Errorf(http.StatusNotFound, "ResourceNotFound",
		"The server parameter '%s' does not exist or privlink does not let it be changed. List the server's configurations for those it has.", id.Name())
}

// putConfig serves PUT and PATCH of a configuration: set a value
// (source user-override) or go back to the default (source
// system-default). A dynamic setting changes Desired.Settings and is
// long-running (202) until the controller has reloaded PostgreSQL; a
// static one is recorded (200) and waits for a restart.
func (p *Provider) putConfig(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	s, ok := lookupSetting(r.ID.Name())
	if !ok {
		return nil, errNoSetting(r.ID)
	}
	var in configIn
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Properties == nil {
		return nil, errMissing("properties", "The configuration's properties")
	}
	source, err := enumValue("properties.source", in.Properties.Source, sourceUser, []string{sourceUser, sourceDefault})
	if err != nil {
		return nil, err
	}
	if source == sourceUser && in.Properties.Value == nil {
		return nil, errMissing("properties.value", "The configuration's value")
	}
	var resp *arm.Response
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		resp = nil
		server, ovs, _, err := serverConfigs(tx, r.ID.Parent())
		if err != nil {
			return err
		}
		var value *string // nil: back to the default
		if source == sourceUser {
			// The bounds depend on the server's compute size.
			v, err := s.normalize(*in.Properties.Value, limitsOf(server))
			if err != nil {
				return err
			}
			value = &v
		}
		serverID, err := arm.ParseID(server.ID)
		if err != nil {
			return fmt.Errorf("stored server %s has a bad id %q: %w", r.ID.Parent(), server.ID, err)
		}
		cur := ovs[s.name]
		if err := r.CheckPreconditions(cur != nil, ""); err != nil {
			return err
		}
		if cur == nil && value == nil || cur != nil && value != nil && cur.Value == *value {
			d, err := loadDesiredOf(tx, serverID)
			if err != nil {
				return err
			}
			resp = arm.OK(configView(server, s, cur, d.Settings)) // nothing changes
			return nil
		}
		if err := errServerState(server.Name, server.Properties.State, "UpdateServerParameter"); err != nil {
			return err
		}
		ov, err := saveOverride(tx, serverID, s, cur, value, r.Caller)
		if err != nil {
			return err
		}
		d, err := loadDesiredOf(tx, serverID)
		if err != nil {
			return err
		}
		if !s.dynamic {
			resp = arm.OK(configView(server, s, ov, d.Settings))
			return nil
		}
		setSetting(d, s, ov)
		if err := saveDesired(tx, serverID, d); err != nil {
			return err
		}
		// The operation is the server's: the controller finishes it with
		// the server's others once PostgreSQL has reloaded.
		op, err := arm.StartOperation(tx, serverID, server.Location, !p.controller)
		if err != nil {
			return err
		}
		resp = accepted(configView(server, s, ov, d.Settings), op)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// settingsFit checks, before a server changes its compute size, that
// every setting the user set fits the new size's limits l. Azure keeps
// the values on a change of compute size and only advises adjusting
// them (its server parameter reference for shared_buffers: "Every time
// you change the product assigned to an instance, you should also adjust
// the value"); privlink refuses the change instead, so that no stored
// value is ever outside what the server's configurations advertise, nor
// one that the next restart would fail on.
func settingsFit(tx store.Tx, serverID arm.ResourceID, l limits) error {
	ovs, err := arm.LoadAll[configOverride](tx, serverID.ChildCollection("configurations"))
	if err != nil {
		return err
	}
	for _, ov := range ovs {
		s, ok := lookupSetting(ov.Name)
		if !ok || s.memoryMax == nil {
			continue
		}
		if _, err := s.normalize(ov.Value, l); err != nil {
			return errInvalid("sku.name", "Invalid value given for parameter sku.name: '%s'. The server's %s is %s, outside what %s allows (%s; %s). Change %s first.",
				l.sku, s.name, ov.Value, l.sku, s.allowedValues(l), s.boundBy(l), s.name)
		}
	}
	return nil
}

// saveOverride stores (value set) or removes (value nil) the override of a
// setting; it returns the override now in force.
func saveOverride(tx store.Tx, serverID arm.ResourceID, s *setting, cur *configOverride, value *string, c *arm.Caller) (*configOverride, error) {
	id := serverID.Child("configurations", s.name)
	if value == nil {
		if err := arm.Delete(tx, id); err != nil {
			return nil, err
		}
		return nil, nil
	}
	now := time.Now().UTC()
	ov := &configOverride{ID: id.String(), Name: s.name, Value: *value, SystemData: newSystemData(c, now)}
	if cur != nil && cur.SystemData != nil {
		sd := *cur.SystemData
		touch(&sd, c, now)
		ov.SystemData = &sd
	}
	return ov, arm.Save(tx, id, ov)
}

// restoreOverride puts the override of a setting back to its value in
// good (the settings a server last ran with), or removes it when good
// does not set it: what a failed generation's roll-back does. The
// override's systemData stays that of the user's last change.
func restoreOverride(tx store.Tx, serverID arm.ResourceID, s *setting, good map[string]string) error {
	id := serverID.Child("configurations", s.name)
	v, ok := good[s.name]
	if !ok {
		return arm.Delete(tx, id)
	}
	ov := configOverride{ID: id.String(), Name: s.name}
	if _, err := arm.Load(tx, id, &ov); err != nil {
		return err
	}
	ov.Value = v
	return arm.Save(tx, id, &ov)
}

// setSetting puts a setting's override (or its absence) into the Desired
// record's settings.
func setSetting(d *Desired, s *setting, ov *configOverride) {
	if ov == nil {
		delete(d.Settings, s.name)
		return
	}
	d.Settings[s.name] = ov.Value
}

// applyStaticSettings brings the static settings' overrides into the
// Desired record: what a start or restart does.
func applyStaticSettings(tx store.Tx, serverID arm.ResourceID, d *Desired) error {
	ovs, err := arm.LoadAll[configOverride](tx, serverID.ChildCollection("configurations"))
	if err != nil {
		return err
	}
	for i := range catalog {
		s := &catalog[i]
		if s.dynamic {
			continue
		}
		var ov *configOverride
		if j := slices.IndexFunc(ovs, func(o configOverride) bool { return strings.EqualFold(o.Name, s.name) }); j >= 0 {
			ov = &ovs[j]
		}
		setSetting(d, s, ov)
	}
	return nil
}
