package network

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/policy"
	"github.com/privlink/privlink/internal/store"
)

// Security rules: child documents of their NSG
// (networkSecurityGroups/{n}/securityRules/{r}), composed into the NSG's
// inline properties.securityRules when read; and the read-only default
// rules Azure puts on every NSG.

const (
	minRulePriority   = 100
	maxRulePriority   = 4096
	maxRuleDescLength = 140
)

// serviceTags are the service tags accepted as a rule's single address
// prefix (case-insensitively, optionally with a ".Region" suffix where Azure
// has regional tags). Azure rejects unknown names with
// SecurityRuleInvalidAddressPrefix.
var serviceTags = map[string]bool{
	"virtualnetwork": true, "internet": true, "azureloadbalancer": true, "azurecloud": true,
	"azureactivedirectory": true, "azuremonitor": true, "azurekeyvault": true, "storage": true, "sql": true,
	"azurecosmosdb": true, "azurecontainerregistry": true, "microsoftcontainerregistry": true, "appservice": true,
	"appservicemanagement": true, "apimanagement": true, "azurebackup": true, "azurefrontdoor.backend": true,
	"azurefrontdoor.frontend": true, "azurefrontdoor.firstparty": true, "azuretrafficmanager": true,
	"eventhub": true, "servicebus": true, "gatewaymanager": true, "guestandhybridmanagement": true,
	"azureresourcemanager": true, "azureportal": true, "datafactory": true, "azuredatabricks": true,
	"azuremachinelearning": true, "batchnodemanagement": true, "hdinsight": true, "logicapps": true,
	"powerbi": true, "azureconnectors": true, "azureupdatedelivery": true, "azurebotservice": true,
}

// defaultRules synthesizes an NSG's default rules, shaped as in spec
// example DefaultSecurityRuleGet.json (empty arrays included).
func defaultRules(nsg, etag string) []*armnetwork.SecurityRule {
	out := make([]*armnetwork.SecurityRule, 0, len(policy.DefaultRules))
	for _, d := range policy.DefaultRules {
		out = append(out, &armnetwork.SecurityRule{
			ID: ptr(nsg + "/defaultSecurityRules/" + d.Name), Name: ptr(d.Name), Type: ptr(typeDefaultRule), Etag: ptr(etag),
			Properties: &armnetwork.SecurityRulePropertiesFormat{
				Description:                ptr(d.Description),
				Protocol:                   ptr(armnetwork.SecurityRuleProtocolAsterisk),
				SourcePortRange:            ptr("*"),
				DestinationPortRange:       ptr("*"),
				SourceAddressPrefix:        ptr(d.Source),
				DestinationAddressPrefix:   ptr(d.Dest),
				Access:                     ptr(armnetwork.SecurityRuleAccess(d.Access)),
				Priority:                   ptr(d.Priority),
				Direction:                  ptr(armnetwork.SecurityRuleDirection(d.Direction)),
				ProvisioningState:          ptr(armnetwork.ProvisioningStateSucceeded),
				SourcePortRanges:           []*string{},
				DestinationPortRanges:      []*string{},
				SourceAddressPrefixes:      []*string{},
				DestinationAddressPrefixes: []*string{},
			},
		})
	}
	return out
}

// ruleWrite is what buildRule needs to know about the write.
type ruleWrite struct {
	nsgID    arm.ResourceID // canonical
	location string
	path     string // JSON path prefix of the rule in the request, "" for a rule PUT
	state    armnetwork.ProvisioningState
	etag     string
	// u answers the ASG checks, shared by the rules of one write; nil:
	// buildRule makes one.
	u *usage
}

// ruleEntry is a rule of an NSG's new set, for the priority check.
type ruleEntry struct {
	name, path, direction string
	priority              int32
}

// buildRule validates a security rule as written by a request and returns
// the document to store. cur is the stored rule (nil on create).
func buildRule(r arm.Reader, w ruleWrite, name string, in, cur *armnetwork.SecurityRule) (*armnetwork.SecurityRule, error) {
	if err := arm.ValidateNetworkName("security rule", name); err != nil {
		if ae, ok := arm.AsError(err); ok && w.path != "" {
			return nil, ae.WithTarget(w.path + "name")
		}
		return nil, err
	}
	if cur != nil && cur.Name != nil {
		name = *cur.Name
	}
	id := w.nsgID.Child("securityRules", name)
	pp := w.path + "properties."
	props := in.Properties
	if props == nil {
		return nil, errMissing(pp+"priority", "A security rule's priority")
	}
	out := &armnetwork.SecurityRulePropertiesFormat{Description: props.Description, ProvisioningState: ptr(w.state)}
	if props.Priority == nil {
		return nil, errMissing(pp+"priority", "A security rule's priority")
	}
	if pr := *props.Priority; pr < minRulePriority || pr > maxRulePriority {
		return nil, badRequest(codeRulePriority, pp+"priority",
			"Security rule has invalid Priority. Value provided: %d Allowed range %d-%d.", pr, minRulePriority, maxRulePriority)
	}
	out.Priority = props.Priority
	dir, err := requiredEnum(pp+"direction", "A security rule's direction", (*string)(props.Direction),
		enumStrings(armnetwork.PossibleSecurityRuleDirectionValues()))
	if err != nil {
		return nil, err
	}
	out.Direction = ptr(armnetwork.SecurityRuleDirection(dir))
	access, err := requiredEnum(pp+"access", "A security rule's access", (*string)(props.Access),
		enumStrings(armnetwork.PossibleSecurityRuleAccessValues()))
	if err != nil {
		return nil, err
	}
	out.Access = ptr(armnetwork.SecurityRuleAccess(access))
	proto, err := requiredEnum(pp+"protocol", "A security rule's protocol", (*string)(props.Protocol),
		enumStrings(armnetwork.PossibleSecurityRuleProtocolValues()))
	if err != nil {
		return nil, err
	}
	out.Protocol = ptr(armnetwork.SecurityRuleProtocol(proto))
	if n := utf8.RuneCountInString(str(props.Description)); n > maxRuleDescLength {
		return nil, errInvalid(pp+"description",
			"The description of security rule '%s' is %d characters long; Azure allows at most %d.", name, n, maxRuleDescLength)
	}
	if out.SourcePortRange, out.SourcePortRanges, err = rulePorts(pp, "source", props.SourcePortRange, props.SourcePortRanges); err != nil {
		return nil, err
	}
	if out.DestinationPortRange, out.DestinationPortRanges, err = rulePorts(pp, "destination", props.DestinationPortRange, props.DestinationPortRanges); err != nil {
		return nil, err
	}
	src, err := ruleAddresses(r, id, w.location, pp, "source", props.SourceAddressPrefix, props.SourceAddressPrefixes, props.SourceApplicationSecurityGroups)
	if err != nil {
		return nil, err
	}
	out.SourceAddressPrefix, out.SourceAddressPrefixes, out.SourceApplicationSecurityGroups = src.prefix, src.prefixes, src.asgs
	dst, err := ruleAddresses(r, id, w.location, pp, "destination", props.DestinationAddressPrefix, props.DestinationAddressPrefixes, props.DestinationApplicationSecurityGroups)
	if err != nil {
		return nil, err
	}
	out.DestinationAddressPrefix, out.DestinationAddressPrefixes, out.DestinationApplicationSecurityGroups = dst.prefix, dst.prefixes, dst.asgs
	u := w.u
	if u == nil {
		u = newUsage(r, id.Subscription)
	}
	if err := checkRuleASGs(u, id, pp, src.asgs, dst.asgs); err != nil {
		return nil, err
	}
	return &armnetwork.SecurityRule{ID: ptr(id.String()), Name: ptr(name), Type: ptr(typeRule), Etag: ptr(w.etag), Properties: out}, nil
}

// requiredEnum validates a required enum property.
func requiredEnum(target, what string, v *string, allowed []string) (string, error) {
	if v == nil {
		return "", errMissing(target, what)
	}
	return enumValue(target, v, "", allowed)
}

// rulePorts validates one side's port range(s): "*", "N" or "N-M" with
// 0 <= N <= M <= 65535, either as the single value or as a list (where "*"
// is not allowed), not both.
func rulePorts(pp, side string, single *string, list []*string) (*string, []*string, error) {
	one, many := pp+side+"PortRange", pp+side+"PortRanges"
	switch {
	case single != nil && len(list) > 0:
		return nil, nil, errInvalid(many, "Set either %sPortRange or %sPortRanges, not both.", side, side)
	case single != nil:
		if !validPortRange(*single) {
			return nil, nil, errPortRange(one, *single)
		}
		return single, []*string{}, nil
	case len(list) > 0:
		for i, p := range list {
			t := arm.Field(many, i)
			switch {
			case p == nil:
				return nil, nil, errMissing(t, "A port range")
			case strings.TrimSpace(*p) == "*":
				return nil, nil, badRequest(codeRulePortRanges, t,
					"Security rule parameter %sPortRanges contains '*'; use %sPortRange \"*\" to match any port.", side, side)
			case !validPortRange(*p):
				return nil, nil, errPortRange(t, *p)
			}
		}
		return nil, list, nil
	}
	return nil, nil, errMissing(one, "A security rule's "+side+" port range")
}

func errPortRange(target, v string) error {
	return badRequest(codeRulePortRange, target,
		"Security rule has invalid Port range. Value provided: %s. Value should be an integer OR integer range with '-' delimiter. Valid range 0-65535.", v)
}

func validPortRange(s string) bool {
	s = strings.TrimSpace(s)
	if s == "*" {
		return true
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, ok := port(lo)
	if !ok {
		return false
	}
	if !isRange {
		return true
	}
	b, ok := port(hi)
	return ok && a <= b
}

func port(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0 && n <= 65535 && strconv.Itoa(n) == s
}

// ruleSide is one side's validated addresses.
type ruleSide struct {
	prefix   *string
	prefixes []*string
	asgs     []*armnetwork.ApplicationSecurityGroup
}

// ruleAddresses validates one side's addresses: exactly one of a single
// prefix ("*", a service tag, an address or a CIDR), a list of addresses or
// CIDRs, or application security groups (which must exist, in the NSG's
// region).
func ruleAddresses(r arm.Reader, rule arm.ResourceID, location, pp, side string, single *string, list []*string, asgs []*armnetwork.ApplicationSecurityGroup) (ruleSide, error) {
	one, many, groups := pp+side+"AddressPrefix", pp+side+"AddressPrefixes", pp+side+"ApplicationSecurityGroups"
	set := 0
	for _, b := range []bool{single != nil, len(list) > 0, len(asgs) > 0} {
		if b {
			set++
		}
	}
	if set > 1 {
		return ruleSide{}, errInvalid(one, "Give the rule's %s as one of %sAddressPrefix, %sAddressPrefixes or %sApplicationSecurityGroups, not several.", side, side, side, side)
	}
	var out ruleSide
	switch {
	case single != nil:
		v := strings.TrimSpace(*single)
		if v != "*" && !serviceTag(v) && !addressOrCIDR(v) {
			return out, badRequest(codeRuleAddressPrefix, one,
				"Security rule has invalid Address prefix. Value provided: %s. Use \"*\", a service tag such as VirtualNetwork, an IP address or a CIDR prefix with no host bits set.", *single)
		}
		out.prefix, out.prefixes = single, []*string{}
	case len(list) > 0:
		for i, p := range list {
			t := arm.Field(many, i)
			if p == nil {
				return out, errMissing(t, "An address prefix")
			}
			v := strings.TrimSpace(*p)
			if v == "*" || serviceTag(v) {
				return out, badRequest(codeRuleUnsupportedValue, t,
					"Security rule parameter %sAddressPrefixes for rule with Id %s cannot specify existing VIRTUALNETWORK, INTERNET, AZURELOADBALANCER, '*' or system tags. Unsupported value used: %s. Put a tag or '*' in %sAddressPrefix instead.",
					side, rule, v, side)
			}
			if !addressOrCIDR(v) {
				return out, badRequest(codeRuleAddressPrefix, t, "Security rule has invalid Address prefix. Value provided: %s.", v)
			}
		}
		out.prefixes = list
	case len(asgs) > 0:
		var err error
		if out.asgs, err = resolveASGs(r, rule, location, groups, asgs, nil); err != nil {
			return out, err
		}
		out.prefixes = []*string{}
	default:
		return out, errMissing(one, "A security rule's "+side+" address prefix")
	}
	return out, nil
}

func serviceTag(s string) bool {
	s = strings.ToLower(s)
	if serviceTags[s] {
		return true
	}
	base, region, ok := strings.Cut(s, ".")
	return ok && region != "" && serviceTags[base] && !strings.Contains(region, ".")
}

func addressOrCIDR(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == ""
	}
	p, err := netip.ParsePrefix(s)
	return err == nil && p.Masked() == p
}

// checkRuleConflicts applies the rule that no two rules of an NSG share a
// priority in one direction; the rule being written comes last.
func checkRuleConflicts(entries []ruleEntry) error {
	for i := range entries {
		for j := 0; j < i; j++ {
			a, b := entries[i], entries[j]
			if a.priority == b.priority && strings.EqualFold(a.direction, b.direction) {
				return badRequest(codeRuleConflict, a.path+"properties.priority",
					"Security rule %s conflicts with rule %s. Rules cannot have the same Priority and Direction (%d, %s). Give one of them another priority. To learn more, see aka.ms/nsgrules.",
					a.name, b.name, a.priority, a.direction)
			}
		}
	}
	return nil
}

func entryOf(rule *armnetwork.SecurityRule, path string) ruleEntry {
	e := ruleEntry{name: str(rule.Name), path: path}
	if rule.Properties != nil {
		if rule.Properties.Priority != nil {
			e.priority = *rule.Properties.Priority
		}
		if rule.Properties.Direction != nil {
			e.direction = string(*rule.Properties.Direction)
		}
	}
	return e
}

func loadRules(r arm.Reader, nsg arm.ResourceID) ([]armnetwork.SecurityRule, error) {
	return arm.LoadAll[armnetwork.SecurityRule](r, childColl(nsg, "securityRules"))
}

func (p *Provider) getRule(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var rule armnetwork.SecurityRule
	ok, err := arm.Load(arm.ReadOnly(ctx, p.st), r.ID, &rule)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errChildNotFound(r.ID)
	}
	return arm.OK(rule), nil
}

func (p *Provider) listRules(ctx context.Context, r *arm.Request) ([]any, error) {
	rules, err := arm.LoadAll[armnetwork.SecurityRule](arm.ReadOnly(ctx, p.st), r.ID)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(rules))
	for i := range rules {
		out[i] = rules[i]
	}
	return out, nil
}

func (p *Provider) putRule(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.SecurityRule
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	var (
		body    *armnetwork.SecurityRule
		op      *arm.Operation
		created bool
	)
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		nsgID := r.ID.Parent()
		var nsg armnetwork.SecurityGroup
		if err := loadParent(tx, nsgID, &nsg); err != nil {
			return err
		}
		var cur armnetwork.SecurityRule
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		canon, err := arm.ParseID(str(nsg.ID))
		if err != nil {
			return err
		}
		state, done := p.settle(r.ID, false)
		w := ruleWrite{nsgID: canon, location: str(nsg.Location), state: state, etag: arm.NewETag()}
		var curp *armnetwork.SecurityRule
		if exists {
			curp = &cur
		}
		if body, err = buildRule(tx, w, r.ID.Name(), &in, curp); err != nil {
			return err
		}
		siblings, err := loadRules(tx, canon)
		if err != nil {
			return err
		}
		var entries []ruleEntry
		for i := range siblings {
			if !strings.EqualFold(str(siblings[i].Name), str(body.Name)) {
				entries = append(entries, entryOf(&siblings[i], ""))
			}
		}
		if err := checkRuleConflicts(append(entries, entryOf(body, ""))); err != nil {
			return err
		}
		if err := arm.Save(tx, r.ID, body); err != nil {
			return err
		}
		if err := touch(tx, nsgID); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, str(nsg.Location), done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}

func (p *Provider) getDefaultRule(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var nsg armnetwork.SecurityGroup
	if err := loadParent(arm.ReadOnly(ctx, p.st), r.ID.Parent(), &nsg); err != nil {
		return nil, err
	}
	for _, d := range defaultRules(str(nsg.ID), str(nsg.Etag)) {
		if strings.EqualFold(str(d.Name), r.ID.Name()) {
			return arm.OK(d), nil
		}
	}
	return nil, errChildNotFound(r.ID)
}

func (p *Provider) listDefaultRules(ctx context.Context, r *arm.Request) ([]any, error) {
	var nsg armnetwork.SecurityGroup
	if err := loadParent(arm.ReadOnly(ctx, p.st), r.ID.Parent(), &nsg); err != nil {
		return nil, err
	}
	var out []any
	for _, d := range defaultRules(str(nsg.ID), str(nsg.Etag)) {
		out = append(out, d)
	}
	return out, nil
}
