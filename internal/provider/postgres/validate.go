package postgres

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Azure's rules for the values of a server.

// serverNameRE is Azure's rule for server names, which are DNS labels
// under postgres.database.azure.com: lowercase letters, digits and
// hyphens, not starting or ending with a hyphen.
var serverNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// invalidServerName is Azure's message for a bad server name (Azure
// PowerShell's Test-AzPostgreSqlFlexibleServerNameAvailability tests quote
// it).
const invalidServerName = "Specified server name contains unsupported characters or is too long. " +
	"Server name must be no longer than 63 characters long, contain only lower-case characters or digits, " +
	"cannot contain '.' or '_' characters and can't start or end with '-' character."

// validServerName reports whether name may name a server: 3-63 characters
// of serverNameRE.
func validServerName(name string) bool {
	return len(name) >= 3 && len(name) <= 63 && serverNameRE.MatchString(name)
}

func validateServerName(name string) error {
	if !validServerName(name) {
		msg := invalidServerName
		if len(name) < 3 {
			msg = "Specified server name is too short: a server name has 3 to 63 characters."
		}
		return errInvalid("serverName", "Invalid value given for parameter serverName: '%s'. %s", name, msg)
	}
	return nil
}

// adminLoginRE: a PostgreSQL role name that needs no quoting, starting
// with a letter.
var adminLoginRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// reservedLogins cannot be the administrator: Azure's list ("Admin login
// name cannot be 'azure_superuser', 'azure_pg_admin', 'admin',
// 'administrator', 'root', 'guest', 'public' or start with 'pg_'"), plus
// the roles privlink's own clusters use (postgres, azuresu).
var reservedLogins = []string{"azure_superuser", "azure_pg_admin", "azuresu", "admin", "administrator", "root", "guest", "public", "postgres"}

func validateAdminLogin(login string) error {
	const target = "properties.administratorLogin"
	switch {
	case login == "" || len(login) > 63:
		return errInvalid(target, "Invalid value given for parameter administratorLogin: it must have 1 to 63 characters.")
	case !adminLoginRE.MatchString(login):
		return errInvalid(target, "Invalid value given for parameter administratorLogin: '%s'. It must start with a letter and contain only letters, digits and underscores.", login)
	case slices.Contains(reservedLogins, strings.ToLower(login)) || strings.HasPrefix(strings.ToLower(login), "pg_"):
		return errInvalid(target, "Invalid value given for parameter administratorLogin: '%s'. Admin login name cannot be '%s' or start with 'pg_'.",
			login, strings.Join(reservedLogins, "', '"))
	}
	return nil
}

// validatePassword applies Azure's password policy for the administrator:
// 8 to 128 characters from three of four categories (uppercase, lowercase,
// digits, non-alphanumeric) and not containing three or more consecutive
// alphanumeric characters of the login. privlink also requires printable
// ASCII, for which PostgreSQL's SASLprep is the identity (scram.go). The
// messages never quote the password.
func validatePassword(password, login string) error {
	const target = "properties.administratorLoginPassword"
	if len(password) < 8 || len(password) > 128 {
		return passwordError(target, "Your password must be at least 8 characters and at most 128 characters.")
	}
	var upper, lower, digit, other bool
	for _, c := range []byte(password) {
		switch {
		case c < 0x20 || c > 0x7e:
			return passwordError(target, "privlink accepts printable ASCII characters only in administrator passwords.")
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= '0' && c <= '9':
			digit = true
		default:
			other = true
		}
	}
	n := 0
	for _, b := range []bool{upper, lower, digit, other} {
		if b {
			n++
		}
	}
	if n < 3 {
		return passwordError(target, "Your password must contain characters from three of the following categories: English uppercase letters, English lowercase letters, numbers (0-9), and non-alphanumeric characters (!, $, #, %, etc.).")
	}
	if containsLoginPart(password, login) {
		return passwordError(target, "Your password cannot contain all or part of the login name. Part of a login name is defined as three or more consecutive alphanumeric characters.")
	}
	return nil
}

func passwordError(target, msg string) error {
	return errCode(codePasswordNotComplex, target, "Password validation failed: %s", msg)
}

// containsLoginPart reports whether password contains three or more
// consecutive alphanumeric characters of login, case-insensitively.
func containsLoginPart(password, login string) bool {
	pw, lg := strings.ToLower(password), strings.ToLower(login)
	for i := 0; i+3 <= len(lg); i++ {
		part := lg[i : i+3]
		if isAlnum(part) && strings.Contains(pw, part) {
			return true
		}
	}
	return false
}

func isAlnum(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// enumValue returns the canonical spelling of an enumeration value, matched
// case-insensitively; def when v is absent or empty.
func enumValue(target string, v *string, def string, allowed []string) (string, error) {
	if v == nil || strings.TrimSpace(*v) == "" {
		return def, nil
	}
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSpace(*v), a) {
			return a, nil
		}
	}
	return "", errEnum(target, *v, allowed)
}

// SKU tiers and the compute names each accepts: Standard_B* for
// Burstable, Standard_D* for GeneralPurpose, Standard_E* for
// MemoryOptimized (Azure's compute sizes, e.g. Standard_B1ms,
// Standard_D4ds_v5, Standard_E8ads_v5).
var skuTiers = []string{"Burstable", "GeneralPurpose", "MemoryOptimized"}

var skuNames = map[string]*regexp.Regexp{
	"Burstable":       regexp.MustCompile(`(?i)^Standard_B[0-9]+m?s$`),
	"GeneralPurpose":  regexp.MustCompile(`(?i)^Standard_D[0-9]+a?d?s_v[0-9]+$`),
	"MemoryOptimized": regexp.MustCompile(`(?i)^Standard_E[0-9]+a?d?s_v[0-9]+$`),
}

// defaultSKUName is the compute size of a tier when only the tier is given.
var defaultSKUName = map[string]string{
	"Burstable":       "Standard_B1ms",
	"GeneralPurpose":  "Standard_D2ds_v5",
	"MemoryOptimized": "Standard_E2ds_v5",
}

// tierOfSKUName infers the tier from a compute name.
func tierOfSKUName(name string) string {
	for _, t := range skuTiers {
		if skuNames[t].MatchString(name) {
			return t
		}
	}
	return ""
}

// buildSKU merges a requested sku into the current one (nil on create)
// and checks that name and tier agree.
func buildSKU(in *skuIn, cur *skuDoc) (*skuDoc, error) {
	out := skuDoc{Name: "Standard_D2ds_v5", Tier: "GeneralPurpose"}
	if cur != nil {
		out = *cur
	}
	if in == nil {
		return &out, nil
	}
	name := strings.TrimSpace(str(in.Name))
	tier, err := enumValue("sku.tier", in.Tier, "", skuTiers)
	if err != nil {
		return nil, err
	}
	switch {
	case name != "" && tier != "":
		out.Name, out.Tier = name, tier
	case name != "":
		out.Name = name
		if t := tierOfSKUName(name); t != "" {
			out.Tier = t
		}
	case tier != "":
		if tier != out.Tier {
			out.Name, out.Tier = defaultSKUName[tier], tier
		}
	}
	if !skuNames[out.Tier].MatchString(out.Name) {
		prefix := map[string]string{"Burstable": "Standard_B", "GeneralPurpose": "Standard_D", "MemoryOptimized": "Standard_E"}[out.Tier]
		return nil, errInvalid("sku.name", "Invalid value given for parameter sku.name: '%s' is not a compute size of tier %s, whose sizes are named %s* (e.g. %s).",
			out.Name, out.Tier, prefix, defaultSKUName[out.Tier])
	}
	if _, ok := skuMemoryGiB(out.Name); !ok {
		return nil, errInvalid("sku.name", "Invalid value given for parameter sku.name: '%s' is not a compute size Azure offers. Tier %s has %s.",
			out.Name, out.Tier, skuSizes[out.Tier])
	}
	return &out, nil
}

// The memory of each compute size, as Azure documents it (Compute
// options in Azure Database for PostgreSQL, concepts-compute.md): the
// Burstable sizes one by one, General Purpose 4 GiB per vCore, Memory
// Optimized 8 GiB per vCore but for a few large sizes. Server parameters
// bounded by memory (shared_buffers) take their bounds from it.
var (
	burstableMemoryGiB = map[string]int64{
		"b1ms": 2, "b2s": 4, "b2ms": 8, "b4ms": 16, "b8ms": 32, "b12ms": 48, "b16ms": 64, "b20ms": 80,
	}
	// vCores offered in the D and E series (128 and 192 in v6 only).
	dVCores = []int64{2, 4, 8, 16, 32, 48, 64, 96, 128, 192}
	eVCores = []int64{2, 4, 8, 16, 20, 32, 48, 64, 96, 128, 192}
	// eMemoryGiB lists the E sizes that do not have 8 GiB per vCore, by
	// vCores and suffix (lower-cased, after the vCores).
	eMemoryGiB = map[string]int64{
		"64s_v3": 432, "64ds_v4": 432, "96ds_v5": 672, "96ads_v5": 672, "96ads_v6": 672, "192ds_v6": 1832,
	}
	skuVCores = regexp.MustCompile(`(?i)^Standard_([DE])([0-9]+)(a?d?s_v[0-9]+)$`)
	skuSizes  = map[string]string{
		"Burstable":       "B1ms (2 GiB), B2s (4 GiB), B2ms (8 GiB), B4ms (16 GiB), B8ms (32 GiB), B12ms (48 GiB), B16ms (64 GiB) and B20ms (80 GiB)",
		"GeneralPurpose":  "2, 4, 8, 16, 32, 48, 64 and 96 vCores (128 and 192 in v6), with 4 GiB per vCore",
		"MemoryOptimized": "2, 4, 8, 16, 20, 32, 48, 64 and 96 vCores (128 and 192 in v6), with 8 GiB per vCore (432 GiB for E64s_v3 and E64ds_v4, 672 GiB for E96)",
	}
)

// skuMemoryGiB returns the memory of a compute size (Standard_D4ds_v5:
// 16); ok is false for a name Azure does not offer.
func skuMemoryGiB(name string) (gib int64, ok bool) {
	if size, ok := strings.CutPrefix(strings.ToLower(name), "standard_"); ok {
		if gib, ok := burstableMemoryGiB[size]; ok {
			return gib, true
		}
	}
	m := skuVCores.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	vcores, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil || vcores > 96 && !strings.HasSuffix(strings.ToLower(m[3]), "_v6") {
		return 0, false
	}
	switch strings.ToUpper(m[1]) {
	case "D":
		if !slices.Contains(dVCores, vcores) {
			return 0, false
		}
		return 4 * vcores, true
	default:
		if !slices.Contains(eVCores, vcores) {
			return 0, false
		}
		if gib, ok := eMemoryGiB[strings.ToLower(m[2]+m[3])]; ok {
			return gib, true
		}
		return 8 * vcores, true
	}
}

// Storage. Premium SSD sizes Azure offers for flexible server, in GiB,
// with the performance tier each gets by default; a tier may be raised
// above that (up to P50 for disks up to 4 TiB, P80 above) but not
// lowered. IOPS follow the tier.
var storageSizes = []int32{32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767}

var baselineTier = map[int32]string{
	32: "P4", 64: "P6", 128: "P10", 256: "P15", 512: "P20", 1024: "P30",
	2048: "P40", 4096: "P50", 8192: "P60", 16384: "P70", 32767: "P80",
}

var storageTiers = []string{"P1", "P2", "P3", "P4", "P6", "P10", "P15", "P20", "P30", "P40", "P50", "P60", "P70", "P80"}

var tierIOPS = map[string]int32{
	"P1": 120, "P2": 120, "P3": 120, "P4": 120, "P6": 240, "P10": 500, "P15": 1100, "P20": 2300,
	"P30": 5000, "P40": 7500, "P50": 7500, "P60": 16000, "P70": 18000, "P80": 20000,
}

const (
	storagePremium   = "Premium_LRS"
	storagePremiumV2 = "PremiumV2_LRS"
)

// buildStorage merges a requested storage block into the current one (nil
// on create).
func buildStorage(in *storageIn, cur *storageDoc) (storageDoc, error) {
	out := storageDoc{AutoGrow: disabled, StorageSizeGB: 128, Type: storagePremium}
	if cur != nil {
		out = *cur
	}
	if in == nil {
		in = &storageIn{}
	}
	typ, err := enumValue("properties.storage.type", in.Type, out.Type, []string{storagePremium, storagePremiumV2, "UltraSSD_LRS"})
	if err != nil {
		return out, err
	}
	if typ == "UltraSSD_LRS" {
		return out, errInvalid("properties.storage.type", "Invalid value given for parameter storage.type: UltraSSD_LRS is not offered for flexible servers; use %s or %s.", storagePremium, storagePremiumV2)
	}
	if cur != nil && typ != cur.Type {
		return out, errInvalid("properties.storage.type", "Invalid value given for parameter storage.type: the storage type of an existing server cannot change from %s to %s.", cur.Type, typ)
	}
	out.Type = typ
	if out.AutoGrow, err = enumValue("properties.storage.autoGrow", in.AutoGrow, out.AutoGrow, []string{enabled, disabled}); err != nil {
		return out, err
	}
	if in.StorageSizeGB != nil {
		size := *in.StorageSizeGB
		if !slices.Contains(storageSizes, size) {
			return out, errInvalid("properties.storage.storageSizeGB", "Invalid value given for parameter storageSizeGB: %d. Allowed sizes in GiB: %s.", size, joinInts(storageSizes))
		}
		if cur != nil && size < cur.StorageSizeGB {
			return out, errInvalid("properties.storage.storageSizeGB", "Invalid value given for parameter storageSizeGB: %d. Storage cannot shrink; the server has %d GiB.", size, cur.StorageSizeGB)
		}
		out.StorageSizeGB = size
	}
	if out.Type == storagePremiumV2 {
		return premiumV2(in, out)
	}
	base := baselineTier[out.StorageSizeGB]
	maxTier := "P50"
	if out.StorageSizeGB > 4096 {
		maxTier = "P80"
	}
	fits := func(t string) bool { return tierRank(t) >= tierRank(base) && tierRank(t) <= tierRank(maxTier) }
	if in.Tier != nil && strings.TrimSpace(*in.Tier) != "" {
		tier, err := enumValue("properties.storage.tier", in.Tier, "", storageTiers)
		if err != nil {
			return out, err
		}
		switch {
		case !fits(tier) && cur != nil && tier == cur.Tier:
			tier = base // the current tier echoed back with a larger size
		case !fits(tier):
			return out, errInvalid("properties.storage.tier", "Invalid value given for parameter storage.tier: %s. A %d GiB disk takes tiers %s to %s.", tier, out.StorageSizeGB, base, maxTier)
		}
		out.Tier = tier
	} else if !fits(out.Tier) {
		out.Tier = base // a new size, or none yet: the size's own tier
	}
	out.Iops, out.Throughput = tierIOPS[out.Tier], 0
	return out, nil
}

// premiumV2 applies Premium SSD v2's IOPS (3000-80000) and throughput
// (125-1200 MB/s); it has no performance tiers.
func premiumV2(in *storageIn, out storageDoc) (storageDoc, error) {
	out.Tier = ""
	if out.Iops == 0 {
		out.Iops = 3000
	}
	if out.Throughput == 0 {
		out.Throughput = 125
	}
	if in.Iops != nil {
		if *in.Iops < 3000 || *in.Iops > 80000 {
			return out, errInvalid("properties.storage.iops", "Invalid value given for parameter storage.iops: %d. Premium SSD v2 takes 3000 to 80000 IOPS.", *in.Iops)
		}
		out.Iops = *in.Iops
	}
	if in.Throughput != nil {
		if *in.Throughput < 125 || *in.Throughput > 1200 {
			return out, errInvalid("properties.storage.throughput", "Invalid value given for parameter storage.throughput: %d. Premium SSD v2 takes 125 to 1200 MB/s.", *in.Throughput)
		}
		out.Throughput = *in.Throughput
	}
	return out, nil
}

func tierRank(t string) int { return slices.Index(storageTiers, t) }

func joinInts(v []int32) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(int(n))
	}
	return strings.Join(s, ", ")
}
