package postgres

import (
	"net/http"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/arm"
)

// Azure's error codes for the rules this provider enforces. Where Azure's
// code for a situation is known it is used and its source noted; "by
// analogy" marks a code chosen to fit Azure's naming where the real one
// could not be confirmed.
const (
	// Azure PG's code for any bad property value: "Invalid value given for
	// parameter serverName/StorageSizeGB/Tier. Specify a valid parameter
	// value." (MicrosoftDocs/azure-docs #106980, terraform-provider-azurerm
	// #22585, azure-sdk-for-python #44200).
	codeInvalidValue = "InvalidParameterValue"
	// "Specified server name is already used." with this code in ARM
	// deployment output and azure-service-operator's handling of Azure's
	// reply; 409 is ARM's status for a conflict.
	codeNameTaken = "ServerNameAlreadyExists"
	// "Restart or Stop Server can only be performed on Started servers.
	// Sever Name = x, Current Server State = Updating"
	// (terraform-provider-azurerm #29219).
	codeNotReady = "ServerIsNotReady"
	// The start counterpart of codeNotReady, by analogy.
	codeNotStopped = "ServerIsNotStopped"
	// "Server 'x' is busy with another operation. Please try again later."
	// (Azure/bicep-registry-modules #4451).
	codeBusy = "ServerBusy"
	// "Operation 'GetServerParameters' cannot be performed as server 'x' is
	// currently in state 'Stopped'." (MySQL flexible server, 409;
	// turbot/steampipe-plugin-azure #860), by analogy for PostgreSQL.
	codeUnavailable = "ServerUnavailableForOperation"
	// Azure SQL's code for the same password policy (azure-cli and
	// TailwindTraders #2 quote it); by analogy for PostgreSQL.
	codePasswordNotComplex = "PasswordNotComplex"
	// privlink's own, as in the network provider: a feature Azure has and
	// privlink does not offer.
	codeFeatureNotSupported = "FeatureNotSupported"
	// privlink's own, for a server whose postmaster does not come up
	// with its settings (Azure reports such failures without a
	// documented code).
	codeStartFailed = "ServerStartFailed"
	// privlink's own: the controller could not bring a server to what
	// the operation asked within its bound.
	codeTimedOut = "OperationTimedOut"
	// Generic ARM codes.
	codeMissingParameter = "MissingRequiredParameter"
)

// StartFailure is the error of an operation whose server did not come up
// with its new settings; reason is what PostgreSQL logged.
func StartFailure(name, reason string) error {
	return arm.Errorf(http.StatusInternalServerError, codeStartFailed,
		"Server '%s' did not start with its new settings: %s.", name, strings.TrimSuffix(strings.TrimSpace(reason), "."))
}

// SettingsRefused is the error of an operation whose settings PostgreSQL
// refused to load; reason is what it said.
func SettingsRefused(name, reason string) error {
	return arm.BadRequest(codeInvalidValue, "properties.value",
		"Server '%s' cannot use its new settings: %s.", name, strings.TrimSuffix(strings.TrimSpace(reason), "."))
}

// Timeout is the error of an operation the controller could not complete
// within limit (its last error is in privlinkd's log, not here: it may
// name internals).
func Timeout(name string, limit time.Duration) error {
	return arm.Errorf(http.StatusInternalServerError, codeTimedOut,
		"The operation on server '%s' did not complete within %v; privlinkd's log has the details.", name, limit)
}

func errInvalid(target, format string, args ...any) error {
	return arm.BadRequest(codeInvalidValue, target, format, args...)
}

// errCode is a 400 with a specific code.
func errCode(code, target, format string, args ...any) error {
	return arm.BadRequest(code, target, format, args...)
}

func errMissing(target, what string) error {
	return arm.BadRequest(codeMissingParameter, target, "%s is required: set %s.", what, target)
}

// errEnum is the 400 for a value outside an enumeration.
func errEnum(target, got string, allowed []string) error {
	return errInvalid(target, "Invalid value given for parameter %s: '%s'. Allowed values: %s.",
		target, got, strings.Join(allowed, ", "))
}

// errServerState is the 409 for an operation the server's state forbids.
func errServerState(name, state, operation string) error {
	switch state {
	case stateStopped:
		return arm.Conflict(codeUnavailable,
			"Operation '%s' cannot be performed as server '%s' is currently in state 'Stopped'. Start the server first.", operation, name)
	case stateReady:
		return nil
	}
	return arm.Conflict(codeBusy, "Server '%s' is busy with another operation (state '%s'). Please try again later.", name, state)
}

// errServerNotFound is the 404 of a missing server.
func errServerNotFound(id arm.ResourceID) error { return arm.NotFound(id) }

// errChildNotFound is the 404 of a missing child resource of a server.
func errChildNotFound(id arm.ResourceID) error {
	return arm.Errorf(http.StatusNotFound, "ResourceNotFound",
		"The requested resource of type '%s' with name '%s' was not found.", id.Type(), id.Name())
}
