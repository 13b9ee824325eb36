package privatedns

import (
	"net/http"
	"strings"

	"github.com/privlink/privlink/internal/arm"
)

// Error codes and messages follow what Azure's private DNS service answers,
// as seen in public reports (sources in the comments); privlink's messages
// add what to do where Azure's say little.

// badRequest is private DNS's usual 400: code "BadRequest" (e.g. "The zone
// name 'x' does not have enough labels...", "The provided ip address 'x' is
// not valid.", "Virtual network resource not found for '...'").
func badRequest(target, format string, args ...any) *arm.Error {
	return arm.BadRequest("BadRequest", target, format, args...)
}

// conflict is private DNS's usual 409: code "Conflict" (duplicate link,
// second registration link, CNAME coexistence).
func conflict(format string, args ...any) *arm.Error {
	return arm.Conflict("Conflict", format, args...)
}

// parentNotFound answers a write on a child whose zone vanished after the
// router checked it.
func parentNotFound(zone arm.ResourceID) *arm.Error {
	return arm.Errorf(http.StatusNotFound, "ParentResourceNotFound",
		"Can not perform requested operation on nested resource. Parent resource '%s' not found.", zone.Name())
}

// notFound is ARM's 404 for a missing resource, naming the whole path of
// a child ("Microsoft.Network/privateDnsZones/z.com/A/www").
func notFound(id arm.ResourceID) *arm.Error {
	parts := []string{id.Namespace}
	for i, t := range id.Types {
		parts = append(parts, t)
		if i < len(id.Names) {
			parts = append(parts, id.Names[i])
		}
	}
	return arm.Errorf(http.StatusNotFound, "ResourceNotFound", "The Resource '%s' under resource group '%s' was not found.",
		strings.Join(parts, "/"), id.ResourceGroup)
}

// locationError checks the location of a zone or link: required, and
// "global" (in any case).
func locationError(loc *string, typ string) error {
	if err := arm.ValidateLocation(loc); err != nil {
		return err
	}
	if !isGlobal(*loc) {
		return arm.BadRequest("LocationNotAvailableForResourceType", "location",
			"The provided location '%s' is not available for resource type '%s'. List of available regions for the resource type is '%s'.",
			*loc, typ, Location)
	}
	return nil
}

func isGlobal(loc string) bool { return equalFold(loc, Location) }
