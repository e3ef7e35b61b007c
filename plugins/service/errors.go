package service

import (
	"github.com/chatdr/chatdr/pluginsdk"
)

// Error codes of the service plugin. They are stable: runbooks and the
// controller match on them.
const (
	// CodeNotConfigured: the plugin_config.service section is missing or invalid.
	CodeNotConfigured = "not_configured"
	// CodeBadParams: a parameter is missing, of the wrong type or invalid.
	CodeBadParams = "bad_params"
	// CodeInvalidName: the service name has characters a service name cannot have.
	CodeInvalidName = "invalid_name"
	// CodeUnknownService: the name is not in plugin_config.service.services.
	CodeUnknownService = "unknown_service"
	// CodeServiceNotFound: configured, but the host has no such service.
	CodeServiceNotFound = "service_not_found"
	// CodeTimeout (retryable): the service did not reach the state in time.
	CodeTimeout = "timeout"
	// CodeAccessDenied: the agent's account may not control the service.
	CodeAccessDenied = "access_denied"
	// CodeStartFailed: the service was started and stopped again, or could not be started.
	CodeStartFailed = "start_failed"
	// CodeStopFailed: the stop request was refused.
	CodeStopFailed = "stop_failed"
	// CodeDependencyFailed: a service this one depends on failed to start.
	CodeDependencyFailed = "dependency_failed"
	// CodeDependentNotManaged: a running dependent service is not in the allow-list.
	CodeDependentNotManaged = "dependent_not_managed"
	// CodeServiceDisabled: the service is disabled.
	CodeServiceDisabled = "service_disabled"
	// CodeBusy (retryable): the service is in a transition that refuses the request.
	CodeBusy = "busy"
	// CodeUnexpectedState: the service is in a state the plugin cannot act from (e.g. paused).
	CodeUnexpectedState = "unexpected_state"
	// CodeBackendUnavailable: the backend does not exist on this OS or host.
	CodeBackendUnavailable = "backend_unavailable"
	// CodeBackendError: the service manager failed in a way not listed above.
	CodeBackendError = "backend_error"
	// CodeStateCorrupt: a process-backend state file cannot be read.
	CodeStateCorrupt = "state_corrupt"
	// CodeUnknownAction and CodeUnknownProbe: not offered by this plugin.
	CodeUnknownAction = "unknown_action"
	CodeUnknownProbe  = "unknown_probe"
)

const hintAllowList = "add it to plugin_config.service.services in agent.yaml (the list of services this agent may manage), then restart the agent"

func errUnknownService(name string, backend string) *pluginsdk.Error {
	return pluginsdk.Terminal(CodeUnknownService, "service %q is not managed by this agent's %s backend", name, backend).
		WithHint(hintAllowList)
}

func errInvalidName(name string) *pluginsdk.Error {
	return pluginsdk.Terminal(CodeInvalidName, "%q is not a valid service name: 1-256 letters, digits, $ _ - ., not starting with - or .", name).
		WithHint("pass the service's short name (e.g. RTCCHAT, MSSQL$INST), not its display name")
}

func errNotFound(name, msg string) *pluginsdk.Error {
	return pluginsdk.Terminal(CodeServiceNotFound, "%s", msg).
		WithHint("the name %s is allowed in agent.yaml but the host has no such service: check its short name (on Windows: Get-CsWindowsService, Get-Service)", name)
}
