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

{{/* The `helm test` Pod: its own name label, so no selector of the release's pods matches it. */}}
{{- define "redline.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "redline.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "redline.testLabels" -}}
helm.sh/chart: {{ include "redline.chart" . }}
{{ include "redline.testSelectorLabels" . }}
app.kubernetes.io/component: helm-test
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

{{/* The chart's own Secret: API/admin keys (given or generated) and inline SASL credentials. */}}
{{- define "redline.secretName" -}}
{{- printf "%s-secrets" (include "redline.fullname" .) }}
{{- end }}

{{- define "redline.createSecret" -}}
{{- $keys := include "redline.authKeys" . | fromJson }}
{{- $auth := or (hasKey $keys "api-keys") (hasKey $keys "admin-keys") }}
{{- $sasl := and (include "redline.saslEnabled" .) (not .Values.kafka.sasl.existingSecret) }}
{{- if or $auth $sasl }}true{{ end }}
{{- end }}

{{- define "redline.authSecretName" -}}
{{- default (include "redline.secretName" .) .Values.auth.existingSecret }}
{{- end }}

{{/*
The key lists the chart's Secret holds, as JSON {"api-keys": "k1,k2", "admin-keys": "…", "generated":
[names]}, resolved once per render and memoised in .Values.auth (secret.yaml, the Deployment's
checksum and NOTES.txt must see the same random keys). For each list:
  given in auth.apiKeys / auth.adminKeys → as given;
  otherwise, unless auth.allowUnauthenticated → generated: the value of the Secret an earlier release
  of this chart generated (lookup, so keys survive `helm upgrade`), else 40 random alphanumerics.
  `helm template` has no cluster to look up: it generates new keys on every run.
With auth.existingSecret the chart holds no keys: the pod reads that Secret.
*/}}
{{- define "redline.authKeys" -}}
{{- if not (hasKey .Values.auth "__resolvedKeys") }}
{{- $resolved := dict "generated" (list) }}
{{- if not .Values.auth.existingSecret }}
{{- $previous := include "redline.previousSecret" . | fromJson }}
{{- $previousData := $previous.data | default dict }}
{{- $previousAnnotations := (($previous.metadata | default dict).annotations) | default dict }}
{{- $generatedBefore := splitList "," (index $previousAnnotations "redline/generated-keys" | default "") }}
{{- range $name, $given := dict "api-keys" .Values.auth.apiKeys "admin-keys" .Values.auth.adminKeys }}
{{- if $given }}
{{- $_ := set $resolved $name (join "," $given) }}
{{- else if not $.Values.auth.allowUnauthenticated }}
{{- if and (has $name $generatedBefore) (index $previousData $name) }}
{{- $_ := set $resolved $name (index $previousData $name | b64dec) }}
{{- else }}
{{- $_ := set $resolved $name (randAlphaNum 40) }}
{{- end }}
{{- $_ := set $resolved "generated" (append $resolved.generated $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- $_ := set .Values.auth "__resolvedKeys" $resolved }}
{{- end }}
{{- toJson .Values.auth.__resolvedKeys }}
{{- end }}

{{/* This release's Secret as the cluster holds it now ({} under `helm template`, or on first install). */}}
{{- define "redline.previousSecret" -}}
{{- lookup "v1" "Secret" .Release.Namespace (include "redline.secretName" .) | toJson }}
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
