{{/*
Helper names follow `helm create` (tokensvc.name, tokensvc.fullname, tokensvc.chart,
tokensvc.labels, tokensvc.selectorLabels, tokensvc.serviceAccountName).
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "tokensvc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name. Truncated to 57 characters (not 63) so "<fullname>-admin" is still a valid
Service name.
*/}}
{{- define "tokensvc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 57 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "tokensvc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "tokensvc.labels" -}}
helm.sh/chart: {{ include "tokensvc.chart" . }}
{{ include "tokensvc.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tokensvc
tokensvc.io/region: {{ .Values.region | quote }}
{{- end }}

{{/* Labels that select the service's pods. Immutable in a Deployment: never add to them. */}}
{{- define "tokensvc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokensvc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "tokensvc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tokensvc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: digest wins over tag; the tag defaults to the appVersion. */}}
{{- define "tokensvc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The name of the ConfigMap with the client files. */}}
{{- define "tokensvc.clientsConfigMapName" -}}
{{- default (printf "%s-clients" (include "tokensvc.fullname" .)) .Values.existingClientsConfigMap }}
{{- end }}

{{/*
TOKENSVC_REDIS_URL: redis.url, or redis+sentinel://h1:p1,h2:p2/<service> built from
redis.sentinel. Empty when neither is set (in-memory state).
*/}}
{{- define "tokensvc.redisUrl" -}}
{{- $sentinel := .Values.redis.sentinel }}
{{- if $sentinel.hosts }}
{{- if .Values.redis.url }}
{{- fail "redis: set either redis.url or redis.sentinel.hosts, not both" }}
{{- end }}
{{- $endpoints := list }}
{{- range $sentinel.hosts }}
{{- $endpoints = append $endpoints (printf "%s:%d" .host (int (default 26379 .port))) }}
{{- end }}
{{- printf "redis+sentinel://%s/%s" (join "," $endpoints) (required "redis.sentinel.service is required with redis.sentinel.hosts" $sentinel.service) }}
{{- else }}
{{- .Values.redis.url }}
{{- end }}
{{- end }}

{{/* Render-time checks that the schema cannot express. */}}
{{- define "tokensvc.validate" -}}
{{- if and (not .Values.clients) (not .Values.existingClientsConfigMap) }}
{{- fail "no clients: set clients.<client-id> (e.g. --set-file clients.myapp=clients_config/myapp.yaml) or existingClientsConfigMap; the service refuses an empty client directory" }}
{{- end }}
{{- if and .Values.clients .Values.existingClientsConfigMap }}
{{- fail "set either clients or existingClientsConfigMap, not both" }}
{{- end }}
{{- $budget := add .Values.preStopSleepSeconds .Values.server.gracefulTimeoutSeconds 5 }}
{{- if gt (int $budget) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "termination budget: preStopSleepSeconds (%v) + server.gracefulTimeoutSeconds (%v) + 5 s margin = %v s exceeds terminationGracePeriodSeconds (%v)" .Values.preStopSleepSeconds .Values.server.gracefulTimeoutSeconds $budget .Values.terminationGracePeriodSeconds) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
