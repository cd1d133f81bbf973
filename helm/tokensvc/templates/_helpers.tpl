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
{{- $scheme := ternary "rediss+sentinel" "redis+sentinel" .Values.redis.tls.enabled }}
{{- $url := printf "%s://%s/%s" $scheme (join "," $endpoints) (required "redis.sentinel.service is required with redis.sentinel.hosts" $sentinel.service) }}
{{- include "tokensvc.withTls" (list . $url "redis.sentinel") }}
{{- else if .Values.redis.url }}
{{- include "tokensvc.withTls" (list . .Values.redis.url "redis.url") }}
{{- end }}
{{- end }}

{{/* TOKENSVC_REDIS_READ_URL: redis.readUrl with the TLS file options; empty when unset. */}}
{{- define "tokensvc.redisReadUrl" -}}
{{- with .Values.redis.readUrl }}
{{- include "tokensvc.withTls" (list $ . "redis.readUrl") }}
{{- end }}
{{- end }}

{{/*
A Redis URL with redis.tls applied: with TLS on it must be rediss:// (or the rediss+sentinel://
the chart built) and gets the mounted files as the query options tokensvc.redis_store.parse_url
accepts (ssl_ca_certs, ssl_certfile, ssl_keyfile). Arguments: (list $ url field-name).
*/}}
{{- define "tokensvc.withTls" -}}
{{- $root := index . 0 }}
{{- $url := index . 1 }}
{{- $field := index . 2 }}
{{- $tls := $root.Values.redis.tls }}
{{- if $tls.enabled }}
{{- if not (hasPrefix "rediss" $url) }}
{{- fail (printf "%s: redis.tls.enabled needs a rediss:// URL" $field) }}
{{- end }}
{{- $options := list }}
{{- if $tls.existingSecret }}
{{- $options = append $options (printf "ssl_ca_certs=/etc/tokensvc/redis-tls/%s" (required "redis.tls.caKey is required with redis.tls.existingSecret" $tls.caKey)) }}
{{- if $tls.certKey }}
{{- $options = append $options (printf "ssl_certfile=/etc/tokensvc/redis-tls/%s" $tls.certKey) }}
{{- $options = append $options (printf "ssl_keyfile=/etc/tokensvc/redis-tls/%s" (required "redis.tls.keyKey is required with redis.tls.certKey" $tls.keyKey)) }}
{{- end }}
{{- end }}
{{- if $options }}
{{- printf "%s%s%s" $url (ternary "&" "?" (contains "?" $url)) (join "&" $options) }}
{{- else }}
{{- $url }}
{{- end }}
{{- else }}
{{- /* A rediss:// URL with tls off keeps working as before: TLS with the system CAs. */}}
{{- $url }}
{{- end }}
{{- end }}

{{/*
The Secret with the fingerprint key: fingerprintKey.existingSecret, or the generated
"<fullname>-fingerprint" (fingerprintKey.generate); empty when neither.
*/}}
{{- define "tokensvc.fingerprintSecretName" -}}
{{- if .Values.fingerprintKey.existingSecret }}
{{- .Values.fingerprintKey.existingSecret }}
{{- else if .Values.fingerprintKey.generate }}
{{- printf "%s-fingerprint" (include "tokensvc.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The checksum/clients annotation: sha256 of the client files alone (the ConfigMap's data, not
its metadata), so identical client files give identical checksums in every region.
*/}}
{{- define "tokensvc.clientsChecksum" -}}
{{- $cm := include (print $.Template.BasePath "/configmap-clients.yaml") . | fromYaml }}
{{- toJson (get $cm "data") | sha256sum }}
{{- end }}

{{/* Render-time checks that the schema cannot express. */}}
{{- define "tokensvc.validate" -}}
{{- if and (not .Values.clients) (not .Values.existingClientsConfigMap) }}
{{- fail "no clients: set clients.<client-id> (e.g. --set-file clients.myapp=clients_config/myapp.yaml) or existingClientsConfigMap; the service refuses an empty client directory" }}
{{- end }}
{{- if and .Values.clients .Values.existingClientsConfigMap }}
{{- fail "set either clients or existingClientsConfigMap, not both" }}
{{- end }}
{{- range $id, $content := .Values.clients }}
{{- $doc := $content }}
{{- if kindIs "string" $content }}
{{- $doc = fromYaml $content }}
{{- if not $doc }}
{{- fail (printf "clients.%s: the client file is empty or only comments; give the file's content (--set-file clients.%s=path/to/%s.yaml)" $id $id $id) }}
{{- end }}
{{- if hasKey $doc "Error" }}
{{- fail (printf "clients.%s: the client file is not a YAML mapping: %s" $id (get $doc "Error")) }}
{{- end }}
{{- end }}
{{- if eq (toString (get $doc "dev")) "true" }}
{{- fail (printf "clients.%s: dev: true clients (like the image's example) are for local development only and the service refuses them on 0.0.0.0; remove `dev: true` and reference real secrets" $id) }}
{{- end }}
{{- end }}
{{- if and .Values.redis.tls.certKey (not .Values.redis.tls.existingSecret) }}
{{- fail "redis.tls.certKey needs redis.tls.existingSecret (the Secret holding the certificate)" }}
{{- end }}
{{- $budget := add .Values.preStopSleepSeconds .Values.server.gracefulTimeoutSeconds 5 }}
{{- if gt (int $budget) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "termination budget: preStopSleepSeconds (%v) + server.gracefulTimeoutSeconds (%v) + 5 s margin = %v s exceeds terminationGracePeriodSeconds (%v)" .Values.preStopSleepSeconds .Values.server.gracefulTimeoutSeconds $budget .Values.terminationGracePeriodSeconds) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
