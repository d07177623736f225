{{/* Names, labels and shared fragments. */}}

{{- define "redline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "redline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "redline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "redline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "redline.labels" -}}
helm.sh/chart: {{ include "redline.chart" . }}
{{ include "redline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: redline
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "redline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "redline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "redline.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The chart's own Secret: created when any secret value is given inline. */}}
{{- define "redline.secretName" -}}
{{- printf "%s-secrets" (include "redline.fullname" .) }}
{{- end }}

{{- define "redline.createSecret" -}}
{{- $auth := and (not .Values.auth.existingSecret) (or .Values.auth.apiKeys .Values.auth.adminKeys) }}
{{- $sasl := and (include "redline.saslEnabled" .) (not .Values.kafka.sasl.existingSecret) }}
{{- if or $auth $sasl }}true{{ end }}
{{- end }}

{{- define "redline.authSecretName" -}}
{{- default (include "redline.secretName" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "redline.authEnabled" -}}
{{- if or .Values.auth.existingSecret .Values.auth.apiKeys .Values.auth.adminKeys }}true{{ end }}
{{- end }}

{{- define "redline.saslEnabled" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "redline.tlsEnabled" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{- define "redline.saslSecretName" -}}
{{- default (include "redline.secretName" .) .Values.kafka.sasl.existingSecret }}
{{- end }}

{{- define "redline.saslUsernameKey" -}}
{{- if .Values.kafka.sasl.existingSecret }}{{ .Values.kafka.sasl.existingSecretUsernameKey }}{{ else }}kafka-sasl-username{{ end }}
{{- end }}

{{- define "redline.saslPasswordKey" -}}
{{- if .Values.kafka.sasl.existingSecret }}{{ .Values.kafka.sasl.existingSecretPasswordKey }}{{ else }}kafka-sasl-password{{ end }}
{{- end }}

{{/* The pack comes from the chart (files or an existing ConfigMap) rather than the image. */}}
{{- define "redline.packFromConfigMap" -}}
{{- if or .Values.rules.files .Values.rules.existingConfigMap }}true{{ end }}
{{- end }}

{{- define "redline.rulesConfigMapName" -}}
{{- default (printf "%s-rules" (include "redline.fullname" .)) .Values.rules.existingConfigMap }}
{{- end }}

{{/* ConfigMap keys cannot hold "/": rules/main.yaml is stored as rules__main.yaml and mounted back. */}}
{{- define "redline.packKey" -}}
{{- . | replace "/" "__" }}
{{- end }}

{{/* Invariants the schema cannot express; `fail` stops a bad install before it reaches the cluster. */}}
{{- define "redline.validate" -}}
{{- $minGrace := add .Values.preStopSleepSeconds (ceil .Values.kafka.drainTimeoutSeconds) 15 }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $minGrace) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + kafka.drainTimeoutSeconds + 15 = %v, or Kubernetes kills the pod mid-drain" .Values.terminationGracePeriodSeconds $minGrace) }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are exclusive: KEDA creates its own HorizontalPodAutoscaler" }}
{{- end }}
{{- if and .Values.keda.enabled (not .Values.kafka.bootstrap) }}
{{- fail "keda.enabled scales on consumer lag and needs kafka.bootstrap" }}
{{- end }}
{{- if and .Values.rules.files .Values.rules.existingConfigMap }}
{{- fail "set rules.files or rules.existingConfigMap, not both" }}
{{- end }}
{{- if and .Values.rules.hotReload (not (include "redline.packFromConfigMap" .)) }}
{{- fail "rules.hotReload watches a pack mounted from a ConfigMap: set rules.files or rules.existingConfigMap" }}
{{- end }}
{{- if and .Values.rules.files (not (hasKey .Values.rules.files "pack.yaml")) }}
{{- fail "rules.files must contain pack.yaml" }}
{{- end }}
{{- if and (include "redline.saslEnabled" .) (not .Values.kafka.sasl.existingSecret) (not .Values.kafka.sasl.username) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.username and password, or kafka.sasl.existingSecret" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if and .Values.kafka.tls.clientCert (not .Values.kafka.tls.existingSecret) }}
{{- fail "kafka.tls.clientCert needs kafka.tls.existingSecret" }}
{{- end }}
{{- end }}
