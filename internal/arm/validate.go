package arm

import (
	"fmt"
	"regexp"
	"strings"
)

// Rules of names and envelopes shared by the providers.

var networkName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$`)

// ValidateNetworkName applies Microsoft.Network's naming rule: 1-80
// characters, letters, digits, '_', '.', '-', starting with a letter or
// digit and ending with a letter, digit or '_'.
func ValidateNetworkName(kind, name string) error {
	if !networkName.MatchString(name) {
		return BadRequest("InvalidResourceName", "name",
			"Resource name %s is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'. (%s)", name, kind)
	}
	return nil
}

// ValidateLocation requires a location on a tracked resource.
func ValidateLocation(loc *string) error {
	if loc == nil || strings.TrimSpace(*loc) == "" {
		return BadRequest("LocationRequired", "location", "The location property is required for this definition.")
	}
	return nil
}

// ValidateTags applies ARM's limits on tags: at most 50, names up to 512
// characters (no '<', '>', '%', '&', '\', '?', '/'), values up to 256.
func ValidateTags(tags map[string]*string) error {
	if len(tags) > 50 {
		return BadRequest("InvalidTag", "tags", "A resource can have at most 50 tags; this request has %d.", len(tags))
	}
	for k, v := range tags {
		if k == "" || len(k) > 512 || strings.ContainsAny(k, `<>%&\?/`) {
			return BadRequest("InvalidTagNameCharacters", "tags", "The tag name '%s' is invalid: 1-512 characters, none of <>%%&\\?/.", k)
		}
		if v != nil && len(*v) > 256 {
			return BadRequest("InvalidTag", "tags."+k, "The value of tag '%s' is longer than 256 characters.", k)
		}
	}
	return nil
}

// Field joins a JSON path for error targets: Field("properties", "subnets", 2) →
// "properties.subnets[2]".
func Field(parts ...any) string {
	var b strings.Builder
	for _, p := range parts {
		switch v := p.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", v)
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, v)
		}
	}
	return b.String()
}
