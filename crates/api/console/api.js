// Generated from /openapi.json by `client_module` in crates/api/src/console.rs; do not edit.
// Regenerate: RAMPART_REGENERATE_CONSOLE_CLIENT=1 cargo test -p rampart-api console_client
// Every operation by operationId: method, path, path and query parameter names, the
// request body's media type (null: none), the credentials it accepts.
export const operations = Object.freeze({
  /** Revoke a named admin token */
  delete_v1_admin_tokens_id: { method: "DELETE", path: "/v1/admin/tokens/{id}", pathParams: ["id"], query: [], body: null, security: ["admin"] },
  /** Unbind a device */
  delete_v1_bindings_did: { method: "DELETE", path: "/v1/bindings/{did}", pathParams: ["did"], query: [], body: null, security: ["user"] },
  /** Delete the signed-in developer's account and what it owns */
  delete_v1_developers_me: { method: "DELETE", path: "/v1/developers/me", pathParams: [], query: [], body: "application/json", security: ["developer"] },
  /** Decline an invitation */
  delete_v1_developers_me_invites_inviteid: { method: "DELETE", path: "/v1/developers/me/invites/{invite_id}", pathParams: ["invite_id"], query: [], body: null, security: ["developer"] },
  /** Delete a device and everything recorded about it */
  delete_v1_devices_did: { method: "DELETE", path: "/v1/devices/{did}", pathParams: ["did"], query: [], body: null, security: ["admin", "developer"] },
  /** Revoke a share (owner) */
  delete_v1_devices_did_shares_shareid: { method: "DELETE", path: "/v1/devices/{did}/shares/{share_id}", pathParams: ["did", "share_id"], query: [], body: null, security: ["user"] },
  /** Delete a webhook with its queued events and dead letters (scope `control`) */
  delete_v1_enterprise_webhooks_webhookid: { method: "DELETE", path: "/v1/enterprise/webhooks/{webhook_id}", pathParams: ["webhook_id"], query: [], body: null, security: ["access_key"] },
  /** Delete all of a webhook's dead letters (scope `control`) */
  delete_v1_enterprise_webhooks_webhookid_dead_letters: { method: "DELETE", path: "/v1/enterprise/webhooks/{webhook_id}/dead-letters", pathParams: ["webhook_id"], query: [], body: null, security: ["access_key"] },
  /** Delete one dead letter (scope `control`) */
  delete_v1_enterprise_webhooks_webhookid_dead_letters_letterid: { method: "DELETE", path: "/v1/enterprise/webhooks/{webhook_id}/dead-letters/{letter_id}", pathParams: ["webhook_id", "letter_id"], query: [], body: null, security: ["access_key"] },
  /** Delete an enterprise and everything it owns */
  delete_v1_enterprises_id: { method: "DELETE", path: "/v1/enterprises/{id}", pathParams: ["id"], query: [], body: null, security: ["admin", "developer"] },
  /** Delete an access key */
  delete_v1_enterprises_id_keys_keyid: { method: "DELETE", path: "/v1/enterprises/{id}/keys/{key_id}", pathParams: ["id", "key_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Remove a member (or leave) */
  delete_v1_enterprises_id_members_developerid: { method: "DELETE", path: "/v1/enterprises/{id}/members/{developer_id}", pathParams: ["id", "developer_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Delete a client, its grants and tokens */
  delete_v1_oauth_clients_clientid: { method: "DELETE", path: "/v1/oauth/clients/{client_id}", pathParams: ["client_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Revoke a grant and its tokens */
  delete_v1_oauth_grants_grantid: { method: "DELETE", path: "/v1/oauth/grants/{grant_id}", pathParams: ["grant_id"], query: [], body: null, security: ["user"] },
  /** Delete a product with its devices and everything recorded about them */
  delete_v1_products_productkey: { method: "DELETE", path: "/v1/products/{product_key}", pathParams: ["product_key"], query: [], body: null, security: ["admin", "developer"] },
  /** Stop trusting a CA */
  delete_v1_products_productkey_ca_certificates_caid: { method: "DELETE", path: "/v1/products/{product_key}/ca-certificates/{ca_id}", pathParams: ["product_key", "ca_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Delete a firmware image */
  delete_v1_products_productkey_firmware_firmwareid: { method: "DELETE", path: "/v1/products/{product_key}/firmware/{firmware_id}", pathParams: ["product_key", "firmware_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Decline or give up a share */
  delete_v1_shares_shareid: { method: "DELETE", path: "/v1/shares/{share_id}", pathParams: ["share_id"], query: [], body: null, security: ["user"] },
  /** Delete the signed-in user's account (GDPR erasure) */
  delete_v1_users_me: { method: "DELETE", path: "/v1/users/me", pathParams: [], query: [], body: "application/json", security: ["user"] },
  /** The web console */
  get_console: { method: "GET", path: "/console", pathParams: [], query: [], body: null, security: [] },
  /** A file of the web console */
  get_console_file: { method: "GET", path: "/console/{file}", pathParams: ["file"], query: [], body: null, security: [] },
  /** The web console's page */
  get_console_index: { method: "GET", path: "/console/", pathParams: [], query: [], body: null, security: [] },
  /** Interactive API documentation */
  get_docs: { method: "GET", path: "/docs", pathParams: [], query: [], body: null, security: [] },
  /** A file of the interactive API documentation */
  get_docs_file: { method: "GET", path: "/docs/{file}", pathParams: ["file"], query: [], body: null, security: [] },
  /** Health of the server and its store */
  get_healthz: { method: "GET", path: "/healthz", pathParams: [], query: [], body: null, security: [] },
  /** Prometheus metrics */
  get_metrics: { method: "GET", path: "/metrics", pathParams: [], query: [], body: null, security: ["admin", "access_key"] },
  /** The consent page of an authorisation request */
  get_oauth_authorize: { method: "GET", path: "/oauth/authorize", pathParams: [], query: ["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"], body: null, security: [] },
  /** This OpenAPI document */
  get_openapi_json: { method: "GET", path: "/openapi.json", pathParams: [], query: [], body: null, security: [] },
  /** Readiness of the server: its store and bus reachable */
  get_readyz: { method: "GET", path: "/readyz", pathParams: [], query: [], body: null, security: [] },
  /** Devices online now and the last hour's reports and refusals by minute */
  get_v1_admin_activity: { method: "GET", path: "/v1/admin/activity", pathParams: [], query: [], body: null, security: ["admin"] },
  /** The whole audit log, newest first */
  get_v1_admin_audit: { method: "GET", path: "/v1/admin/audit", pathParams: [], query: ["actor", "actor_kind", "action", "target", "from", "to", "tenant", "page", "limit"], body: null, security: ["admin"] },
  /** Verify the audit hash chain */
  get_v1_admin_audit_verify: { method: "GET", path: "/v1/admin/audit/verify", pathParams: [], query: [], body: null, security: ["admin"] },
  /** List developers */
  get_v1_admin_developers: { method: "GET", path: "/v1/admin/developers", pathParams: [], query: ["email", "page", "limit"], body: null, security: ["admin"] },
  /** A developer */
  get_v1_admin_developers_id: { method: "GET", path: "/v1/admin/developers/{id}", pathParams: ["id"], query: [], body: null, security: ["admin"] },
  /** Live events of every device (WebSocket) */
  get_v1_admin_events: { method: "GET", path: "/v1/admin/events", pathParams: [], query: [], body: null, security: ["admin", "user_query"] },
  /** List the named admin tokens */
  get_v1_admin_tokens: { method: "GET", path: "/v1/admin/tokens", pathParams: [], query: [], body: null, security: ["admin"] },
  /** The user's devices, newest first */
  get_v1_bindings: { method: "GET", path: "/v1/bindings", pathParams: [], query: ["page", "limit"], body: null, security: ["user", "oauth"] },
  /** The signed-in developer and their enterprises */
  get_v1_developers_me: { method: "GET", path: "/v1/developers/me", pathParams: [], query: [], body: null, security: ["developer"] },
  /** Invitations addressed to the developer */
  get_v1_developers_me_invites: { method: "GET", path: "/v1/developers/me/invites", pathParams: [], query: [], body: null, security: ["developer"] },
  /** Live push of the developer's devices (WebSocket) */
  get_v1_developers_ws: { method: "GET", path: "/v1/developers/ws", pathParams: [], query: [], body: null, security: ["developer", "user_query"] },
  /** A device's update check (HTTPS devices) */
  get_v1_device_ota: { method: "GET", path: "/v1/device/ota", pathParams: [], query: ["target", "version", "sequence", "hardware_version"], body: null, security: ["device"] },
  /** Download an image (the URL of a manifest) */
  get_v1_device_ota_firmware_firmwareid: { method: "GET", path: "/v1/device/ota/firmware/{firmware_id}", pathParams: ["firmware_id"], query: ["did", "expires", "sig"], body: null, security: ["device"] },
  /** List the devices the caller may read */
  get_v1_devices: { method: "GET", path: "/v1/devices", pathParams: [], query: ["product_key", "q", "page", "limit"], body: null, security: ["admin", "developer"] },
  /** A device, its latest state and its shadow */
  get_v1_devices_did: { method: "GET", path: "/v1/devices/{did}", pathParams: ["did"], query: [], body: null, security: ["admin", "user", "developer", "oauth"] },
  /** A command's status */
  get_v1_devices_did_commands_commandid: { method: "GET", path: "/v1/devices/{did}/commands/{command_id}", pathParams: ["did", "command_id"], query: [], body: null, security: ["admin", "user", "developer", "oauth"] },
  /** A device's reported values, newest first */
  get_v1_devices_did_history: { method: "GET", path: "/v1/devices/{did}/history", pathParams: ["did"], query: ["point", "from", "to", "limit"], body: null, security: ["admin", "user", "developer", "oauth"] },
  /** Read a device's passcode */
  get_v1_devices_did_passcode: { method: "GET", path: "/v1/devices/{did}/passcode", pathParams: ["did"], query: [], body: null, security: ["admin", "developer"] },
  /** Every share of a device (owner) */
  get_v1_devices_did_shares: { method: "GET", path: "/v1/devices/{did}/shares", pathParams: ["did"], query: [], body: null, security: ["user"] },
  /** The enterprise's audit entries, newest first (scope `read`) */
  get_v1_enterprise_audit: { method: "GET", path: "/v1/enterprise/audit", pathParams: [], query: ["actor", "actor_kind", "action", "target", "from", "to", "page", "limit"], body: null, security: ["access_key"] },
  /** The devices of the key's products (scope `read`) */
  get_v1_enterprise_devices: { method: "GET", path: "/v1/enterprise/devices", pathParams: [], query: ["product_key", "page", "limit"], body: null, security: ["access_key"] },
  /** A device, its state and presence (scope `read`) */
  get_v1_enterprise_devices_did: { method: "GET", path: "/v1/enterprise/devices/{did}", pathParams: ["did"], query: [], body: null, security: ["access_key"] },
  /** A command's status (scope `control`) */
  get_v1_enterprise_devices_did_commands_commandid: { method: "GET", path: "/v1/enterprise/devices/{did}/commands/{command_id}", pathParams: ["did", "command_id"], query: [], body: null, security: ["access_key"] },
  /** A device's reported values, newest first (scope `read`) */
  get_v1_enterprise_devices_did_history: { method: "GET", path: "/v1/enterprise/devices/{did}/history", pathParams: ["did"], query: ["point", "from", "to", "limit"], body: null, security: ["access_key"] },
  /** A device's firmware and update progress (scope `read`) */
  get_v1_enterprise_devices_did_ota: { method: "GET", path: "/v1/enterprise/devices/{did}/ota", pathParams: ["did"], query: [], body: null, security: ["access_key"] },
  /** The operator event stream (WebSocket, scope `read`) */
  get_v1_enterprise_events: { method: "GET", path: "/v1/enterprise/events", pathParams: [], query: ["products", "events", "subkey", "prefetch"], body: null, security: ["access_key"] },
  /** The webhooks the key sees (scope `read`) */
  get_v1_enterprise_webhooks: { method: "GET", path: "/v1/enterprise/webhooks", pathParams: [], query: ["page", "limit"], body: null, security: ["access_key"] },
  /** A webhook (scope `read`) */
  get_v1_enterprise_webhooks_webhookid: { method: "GET", path: "/v1/enterprise/webhooks/{webhook_id}", pathParams: ["webhook_id"], query: [], body: null, security: ["access_key"] },
  /** A webhook's dead letters, oldest first (scope `read`) */
  get_v1_enterprise_webhooks_webhookid_dead_letters: { method: "GET", path: "/v1/enterprise/webhooks/{webhook_id}/dead-letters", pathParams: ["webhook_id"], query: ["page", "limit"], body: null, security: ["access_key"] },
  /** The caller's enterprises */
  get_v1_enterprises: { method: "GET", path: "/v1/enterprises", pathParams: [], query: [], body: null, security: ["developer"] },
  /** An enterprise */
  get_v1_enterprises_id: { method: "GET", path: "/v1/enterprises/{id}", pathParams: ["id"], query: [], body: null, security: ["admin", "developer"] },
  /** An enterprise's audit entries, newest first */
  get_v1_enterprises_id_audit: { method: "GET", path: "/v1/enterprises/{id}/audit", pathParams: ["id"], query: ["actor", "actor_kind", "action", "target", "from", "to", "page", "limit"], body: null, security: ["admin", "developer"] },
  /** An enterprise's access keys (never a secret) */
  get_v1_enterprises_id_keys: { method: "GET", path: "/v1/enterprises/{id}/keys", pathParams: ["id"], query: [], body: null, security: ["admin", "developer"] },
  /** An enterprise's members */
  get_v1_enterprises_id_members: { method: "GET", path: "/v1/enterprises/{id}/members", pathParams: ["id"], query: [], body: null, security: ["admin", "developer"] },
  /** The clients the caller manages */
  get_v1_oauth_clients: { method: "GET", path: "/v1/oauth/clients", pathParams: [], query: ["page", "limit"], body: null, security: ["admin", "developer"] },
  /** One client the caller manages */
  get_v1_oauth_clients_clientid: { method: "GET", path: "/v1/oauth/clients/{client_id}", pathParams: ["client_id"], query: [], body: null, security: ["admin", "developer"] },
  /** The third-party grants of the user */
  get_v1_oauth_grants: { method: "GET", path: "/v1/oauth/grants", pathParams: [], query: ["page", "limit"], body: null, security: ["user"] },
  /** Finish an OpenID Connect login */
  get_v1_oidc_provider_callback: { method: "GET", path: "/v1/oidc/{provider}/callback", pathParams: ["provider"], query: ["code", "state", "error"], body: null, security: [] },
  /** Start an OpenID Connect login */
  get_v1_oidc_provider_start: { method: "GET", path: "/v1/oidc/{provider}/start", pathParams: ["provider"], query: ["app_id"], body: null, security: [] },
  /** List the products the caller may read */
  get_v1_products: { method: "GET", path: "/v1/products", pathParams: [], query: ["page", "limit"], body: null, security: ["admin", "developer"] },
  /** A product and its data points */
  get_v1_products_productkey: { method: "GET", path: "/v1/products/{product_key}", pathParams: ["product_key"], query: [], body: null, security: ["admin", "developer"] },
  /** The CAs a product trusts */
  get_v1_products_productkey_ca_certificates: { method: "GET", path: "/v1/products/{product_key}/ca-certificates", pathParams: ["product_key"], query: [], body: null, security: ["admin", "developer"] },
  /** A product's campaigns */
  get_v1_products_productkey_campaigns: { method: "GET", path: "/v1/products/{product_key}/campaigns", pathParams: ["product_key"], query: ["page", "limit"], body: null, security: ["admin", "developer"] },
  /** A campaign: its state, stage and device counts */
  get_v1_products_productkey_campaigns_campaignid: { method: "GET", path: "/v1/products/{product_key}/campaigns/{campaign_id}", pathParams: ["product_key", "campaign_id"], query: [], body: null, security: ["admin", "developer"] },
  /** A campaign's devices and where each stands */
  get_v1_products_productkey_campaigns_campaignid_devices: { method: "GET", path: "/v1/products/{product_key}/campaigns/{campaign_id}/devices", pathParams: ["product_key", "campaign_id"], query: ["page", "limit"], body: null, security: ["admin", "developer"] },
  /** A product's factory credentials */
  get_v1_products_productkey_factory_credentials: { method: "GET", path: "/v1/products/{product_key}/factory-credentials", pathParams: ["product_key"], query: [], body: null, security: ["admin", "developer"] },
  /** List a product's firmware, newest first */
  get_v1_products_productkey_firmware: { method: "GET", path: "/v1/products/{product_key}/firmware", pathParams: ["product_key"], query: ["page", "limit"], body: null, security: ["admin", "developer"] },
  /** The product's OTA signing key (public half) */
  get_v1_products_productkey_ota_key: { method: "GET", path: "/v1/products/{product_key}/ota-key", pathParams: ["product_key"], query: [], body: null, security: ["admin", "developer"] },
  /** Read the product secret */
  get_v1_products_productkey_secret: { method: "GET", path: "/v1/products/{product_key}/secret", pathParams: ["product_key"], query: [], body: null, security: ["admin", "developer"] },
  /** The shares offered to the user */
  get_v1_shares: { method: "GET", path: "/v1/shares", pathParams: [], query: ["page", "limit"], body: null, security: ["user"] },
  /** The signed-in user */
  get_v1_users_me: { method: "GET", path: "/v1/users/me", pathParams: [], query: [], body: null, security: ["user"] },
  /** Everything held about the signed-in user (GDPR access) */
  get_v1_users_me_export: { method: "GET", path: "/v1/users/me/export", pathParams: [], query: [], body: null, security: ["user"] },
  /** Live push of device events (WebSocket) */
  get_v1_ws: { method: "GET", path: "/v1/ws", pathParams: [], query: [], body: null, security: ["user", "user_query"] },
  /** Change a client's name or redirect URIs */
  patch_v1_oauth_clients_clientid: { method: "PATCH", path: "/v1/oauth/clients/{client_id}", pathParams: ["client_id"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Approve or deny an authorisation request as the signed-in user */
  post_oauth_authorize: { method: "POST", path: "/oauth/authorize", pathParams: [], query: [], body: "application/json", security: ["user"] },
  /** Answer the consent form */
  post_oauth_authorize_consent: { method: "POST", path: "/oauth/authorize/consent", pathParams: [], query: [], body: "application/x-www-form-urlencoded", security: [] },
  /** Revoke a token (RFC 7009) */
  post_oauth_revoke: { method: "POST", path: "/oauth/revoke", pathParams: [], query: [], body: "application/x-www-form-urlencoded", security: ["client_basic"] },
  /** Exchange a code or a refresh token (RFC 6749) */
  post_oauth_token: { method: "POST", path: "/oauth/token", pathParams: [], query: [], body: "application/x-www-form-urlencoded", security: ["client_basic"] },
  /** Create an active developer account */
  post_v1_admin_developers: { method: "POST", path: "/v1/admin/developers", pathParams: [], query: [], body: "application/json", security: ["admin"] },
  /** Suspend a developer */
  post_v1_admin_developers_id_suspend: { method: "POST", path: "/v1/admin/developers/{id}/suspend", pathParams: ["id"], query: [], body: null, security: ["admin"] },
  /** Lift a developer's suspension */
  post_v1_admin_developers_id_unsuspend: { method: "POST", path: "/v1/admin/developers/{id}/unsuspend", pathParams: ["id"], query: [], body: null, security: ["admin"] },
  /** Create an enterprise for a developer */
  post_v1_admin_enterprises: { method: "POST", path: "/v1/admin/enterprises", pathParams: [], query: [], body: "application/json", security: ["admin"] },
  /** Suspend an enterprise */
  post_v1_admin_enterprises_id_suspend: { method: "POST", path: "/v1/admin/enterprises/{id}/suspend", pathParams: ["id"], query: [], body: null, security: ["admin"] },
  /** Lift an enterprise's suspension */
  post_v1_admin_enterprises_id_unsuspend: { method: "POST", path: "/v1/admin/enterprises/{id}/unsuspend", pathParams: ["id"], query: [], body: null, security: ["admin"] },
  /** Create a named admin token */
  post_v1_admin_tokens: { method: "POST", path: "/v1/admin/tokens", pathParams: [], query: [], body: "application/json", security: ["admin"] },
  /** Create a client app for some products */
  post_v1_apps: { method: "POST", path: "/v1/apps", pathParams: [], query: [], body: "application/json", security: ["admin"] },
  /** Bind a device with its passcode or a bind token */
  post_v1_bindings: { method: "POST", path: "/v1/bindings", pathParams: [], query: [], body: "application/json", security: ["user"] },
  /** Sign up a developer */
  post_v1_developers: { method: "POST", path: "/v1/developers", pathParams: [], query: [], body: "application/json", security: [] },
  /** Activate a developer account */
  post_v1_developers_activate: { method: "POST", path: "/v1/developers/activate", pathParams: [], query: [], body: "application/json", security: [] },
  /** Send a new activation code */
  post_v1_developers_activate_resend: { method: "POST", path: "/v1/developers/activate/resend", pathParams: [], query: [], body: "application/json", security: [] },
  /** Log in (developer) */
  post_v1_developers_login: { method: "POST", path: "/v1/developers/login", pathParams: [], query: [], body: "application/json", security: [] },
  /** End this login */
  post_v1_developers_logout: { method: "POST", path: "/v1/developers/logout", pathParams: [], query: [], body: null, security: ["developer"] },
  /** Accept an invitation */
  post_v1_developers_me_invites_inviteid_accept: { method: "POST", path: "/v1/developers/me/invites/{invite_id}/accept", pathParams: ["invite_id"], query: [], body: null, security: ["developer"] },
  /** Change the password */
  post_v1_developers_me_password: { method: "POST", path: "/v1/developers/me/password", pathParams: [], query: [], body: "application/json", security: ["developer"] },
  /** Start TOTP enrolment */
  post_v1_developers_me_totp: { method: "POST", path: "/v1/developers/me/totp", pathParams: [], query: [], body: null, security: ["developer"] },
  /** Confirm TOTP with a first code */
  post_v1_developers_me_totp_confirm: { method: "POST", path: "/v1/developers/me/totp/confirm", pathParams: [], query: [], body: "application/json", security: ["developer"] },
  /** Turn TOTP off */
  post_v1_developers_me_totp_disable: { method: "POST", path: "/v1/developers/me/totp/disable", pathParams: [], query: [], body: "application/json", security: ["developer"] },
  /** Ask for a password reset code */
  post_v1_developers_password_reset: { method: "POST", path: "/v1/developers/password/reset", pathParams: [], query: [], body: "application/json", security: [] },
  /** Set a new password with the reset code */
  post_v1_developers_password_reset_confirm: { method: "POST", path: "/v1/developers/password/reset/confirm", pathParams: [], query: [], body: "application/json", security: [] },
  /** Spend a refresh token for a new pair */
  post_v1_developers_token_refresh: { method: "POST", path: "/v1/developers/token/refresh", pathParams: [], query: [], body: "application/json", security: [] },
  /** A device's progress report (HTTPS devices) */
  post_v1_device_ota_status: { method: "POST", path: "/v1/device/ota/status", pathParams: [], query: [], body: "application/json", security: ["device"] },
  /** Register a device (signed request) */
  post_v1_device_register: { method: "POST", path: "/v1/device/register", pathParams: [], query: [], body: "application/json", security: [] },
  /** Mint a single-use bind token (owner) */
  post_v1_devices_did_bind_tokens: { method: "POST", path: "/v1/devices/{did}/bind-tokens", pathParams: ["did"], query: [], body: null, security: ["user"] },
  /** Send a command to a device */
  post_v1_devices_did_commands: { method: "POST", path: "/v1/devices/{did}/commands", pathParams: ["did"], query: [], body: "application/json", security: ["admin", "user", "developer", "oauth"] },
  /** Disable a device */
  post_v1_devices_did_disable: { method: "POST", path: "/v1/devices/{did}/disable", pathParams: ["did"], query: [], body: null, security: ["admin", "developer"] },
  /** Enable a disabled device */
  post_v1_devices_did_enable: { method: "POST", path: "/v1/devices/{did}/enable", pathParams: ["did"], query: [], body: null, security: ["admin", "developer"] },
  /** Send a passthrough message to a device */
  post_v1_devices_did_raw: { method: "POST", path: "/v1/devices/{did}/raw", pathParams: ["did"], query: [], body: "application/octet-stream", security: ["admin", "user", "developer", "oauth"] },
  /** Open a re-provisioning window */
  post_v1_devices_did_reprovision: { method: "POST", path: "/v1/devices/{did}/reprovision", pathParams: ["did"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Offer a device to another user (owner) */
  post_v1_devices_did_shares: { method: "POST", path: "/v1/devices/{did}/shares", pathParams: ["did"], query: [], body: "application/json", security: ["user"] },
  /** Send a command to a device (scope `control`) */
  post_v1_enterprise_devices_did_commands: { method: "POST", path: "/v1/enterprise/devices/{did}/commands", pathParams: ["did"], query: [], body: "application/json", security: ["access_key"] },
  /** Send a passthrough message to a device (scope `control`) */
  post_v1_enterprise_devices_did_raw: { method: "POST", path: "/v1/enterprise/devices/{did}/raw", pathParams: ["did"], query: [], body: "application/octet-stream", security: ["access_key"] },
  /** Create a webhook (scope `control`) */
  post_v1_enterprise_webhooks: { method: "POST", path: "/v1/enterprise/webhooks", pathParams: [], query: [], body: "application/json", security: ["access_key"] },
  /** Queue one dead letter again (scope `control`) */
  post_v1_enterprise_webhooks_webhookid_dead_letters_letterid_redrive: { method: "POST", path: "/v1/enterprise/webhooks/{webhook_id}/dead-letters/{letter_id}/redrive", pathParams: ["webhook_id", "letter_id"], query: [], body: null, security: ["access_key"] },
  /** Queue all of a webhook's dead letters again (scope `control`) */
  post_v1_enterprise_webhooks_webhookid_dead_letters_redrive: { method: "POST", path: "/v1/enterprise/webhooks/{webhook_id}/dead-letters/redrive", pathParams: ["webhook_id"], query: [], body: null, security: ["access_key"] },
  /** Pause a webhook (scope `control`) */
  post_v1_enterprise_webhooks_webhookid_disable: { method: "POST", path: "/v1/enterprise/webhooks/{webhook_id}/disable", pathParams: ["webhook_id"], query: [], body: null, security: ["access_key"] },
  /** Resume a webhook (scope `control`) */
  post_v1_enterprise_webhooks_webhookid_enable: { method: "POST", path: "/v1/enterprise/webhooks/{webhook_id}/enable", pathParams: ["webhook_id"], query: [], body: null, security: ["access_key"] },
  /** Create an enterprise */
  post_v1_enterprises: { method: "POST", path: "/v1/enterprises", pathParams: [], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Invite a developer by e-mail */
  post_v1_enterprises_id_invites: { method: "POST", path: "/v1/enterprises/{id}/invites", pathParams: ["id"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Create an access key */
  post_v1_enterprises_id_keys: { method: "POST", path: "/v1/enterprises/{id}/keys", pathParams: ["id"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Disable an access key */
  post_v1_enterprises_id_keys_keyid_disable: { method: "POST", path: "/v1/enterprises/{id}/keys/{key_id}/disable", pathParams: ["id", "key_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Enable a disabled access key */
  post_v1_enterprises_id_keys_keyid_enable: { method: "POST", path: "/v1/enterprises/{id}/keys/{key_id}/enable", pathParams: ["id", "key_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Give an access key a new secret */
  post_v1_enterprises_id_keys_keyid_rotate: { method: "POST", path: "/v1/enterprises/{id}/keys/{key_id}/rotate", pathParams: ["id", "key_id"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Issue a batch of device identities (factory line) */
  post_v1_factory_batches: { method: "POST", path: "/v1/factory/batches", pathParams: [], query: [], body: "application/json", security: ["factory_credential"] },
  /** Revoke a batch */
  post_v1_factory_batches_batchid_revoke: { method: "POST", path: "/v1/factory/batches/{batch_id}/revoke", pathParams: ["batch_id"], query: [], body: null, security: ["factory_credential", "admin", "developer"] },
  /** Log in (end user) */
  post_v1_login: { method: "POST", path: "/v1/login", pathParams: [], query: [], body: "application/json", security: [] },
  /** End this login */
  post_v1_logout: { method: "POST", path: "/v1/logout", pathParams: [], query: [], body: null, security: ["user"] },
  /** End every login of the user */
  post_v1_logout_all: { method: "POST", path: "/v1/logout/all", pathParams: [], query: [], body: null, security: ["user"] },
  /** Register a third-party client */
  post_v1_oauth_clients: { method: "POST", path: "/v1/oauth/clients", pathParams: [], query: [], body: "application/json", security: ["admin", "developer"] },
  /** A new secret for a confidential client */
  post_v1_oauth_clients_clientid_secret_rotate: { method: "POST", path: "/v1/oauth/clients/{client_id}/secret/rotate", pathParams: ["client_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Create a product */
  post_v1_products: { method: "POST", path: "/v1/products", pathParams: [], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Add hardware ids to the product's allowlist */
  post_v1_products_productkey_allowlist: { method: "POST", path: "/v1/products/{product_key}/allowlist", pathParams: ["product_key"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Upload an allowlist file (CSV or one hardware id per line) */
  post_v1_products_productkey_allowlist_file: { method: "POST", path: "/v1/products/{product_key}/allowlist/file", pathParams: ["product_key"], query: [], body: "text/csv", security: ["admin", "developer"] },
  /** Trust a CA for the product's device certificates */
  post_v1_products_productkey_ca_certificates: { method: "POST", path: "/v1/products/{product_key}/ca-certificates", pathParams: ["product_key"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Start a campaign */
  post_v1_products_productkey_campaigns: { method: "POST", path: "/v1/products/{product_key}/campaigns", pathParams: ["product_key"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Abort a campaign */
  post_v1_products_productkey_campaigns_campaignid_abort: { method: "POST", path: "/v1/products/{product_key}/campaigns/{campaign_id}/abort", pathParams: ["product_key", "campaign_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Pause a running campaign */
  post_v1_products_productkey_campaigns_campaignid_pause: { method: "POST", path: "/v1/products/{product_key}/campaigns/{campaign_id}/pause", pathParams: ["product_key", "campaign_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Resume a paused campaign */
  post_v1_products_productkey_campaigns_campaignid_resume: { method: "POST", path: "/v1/products/{product_key}/campaigns/{campaign_id}/resume", pathParams: ["product_key", "campaign_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Post a CA's revocation list */
  post_v1_products_productkey_crl: { method: "POST", path: "/v1/products/{product_key}/crl", pathParams: ["product_key"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Pre-register a device with its Ed25519 public key */
  post_v1_products_productkey_devices: { method: "POST", path: "/v1/products/{product_key}/devices", pathParams: ["product_key"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Issue a batch of factory device identities */
  post_v1_products_productkey_factory_batches: { method: "POST", path: "/v1/products/{product_key}/factory-batches", pathParams: ["product_key"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Give a factory line a credential */
  post_v1_products_productkey_factory_credentials: { method: "POST", path: "/v1/products/{product_key}/factory-credentials", pathParams: ["product_key"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Revoke a factory credential */
  post_v1_products_productkey_factory_credentials_credentialid_revoke: { method: "POST", path: "/v1/products/{product_key}/factory-credentials/{credential_id}/revoke", pathParams: ["product_key", "credential_id"], query: [], body: null, security: ["admin", "developer"] },
  /** Upload a firmware image */
  post_v1_products_productkey_firmware: { method: "POST", path: "/v1/products/{product_key}/firmware", pathParams: ["product_key"], query: [], body: "multipart/form-data", security: ["admin", "developer"] },
  /** Rotate the product secret */
  post_v1_products_productkey_secret_rotate: { method: "POST", path: "/v1/products/{product_key}/secret/rotate", pathParams: ["product_key"], query: [], body: null, security: ["admin", "developer"] },
  /** Accept a share */
  post_v1_shares_shareid_accept: { method: "POST", path: "/v1/shares/{share_id}/accept", pathParams: ["share_id"], query: [], body: null, security: ["user"] },
  /** Spend a refresh token for a new pair */
  post_v1_token_refresh: { method: "POST", path: "/v1/token/refresh", pathParams: [], query: [], body: "application/json", security: [] },
  /** Sign up an end user */
  post_v1_users: { method: "POST", path: "/v1/users", pathParams: [], query: [], body: "application/json", security: [] },
  /** Activate an account with its code */
  post_v1_users_activate: { method: "POST", path: "/v1/users/activate", pathParams: [], query: [], body: "application/json", security: [] },
  /** Send a new activation code */
  post_v1_users_activate_resend: { method: "POST", path: "/v1/users/activate/resend", pathParams: [], query: [], body: "application/json", security: [] },
  /** Change the password */
  post_v1_users_me_password: { method: "POST", path: "/v1/users/me/password", pathParams: [], query: [], body: "application/json", security: ["user"] },
  /** Ask for a password reset code */
  post_v1_users_password_reset: { method: "POST", path: "/v1/users/password/reset", pathParams: [], query: [], body: "application/json", security: [] },
  /** Set a new password with the reset code */
  post_v1_users_password_reset_confirm: { method: "POST", path: "/v1/users/password/reset/confirm", pathParams: [], query: [], body: "application/json", security: [] },
  /** Change a device's desired state */
  put_v1_devices_did_desired: { method: "PUT", path: "/v1/devices/{did}/desired", pathParams: ["did"], query: [], body: "application/json", security: ["admin", "user", "developer", "oauth"] },
  /** Change a member's role */
  put_v1_enterprises_id_members_developerid: { method: "PUT", path: "/v1/enterprises/{id}/members/{developer_id}", pathParams: ["id", "developer_id"], query: [], body: "application/json", security: ["admin", "developer"] },
  /** Replace a product's identity modes */
  put_v1_products_productkey_identity: { method: "PUT", path: "/v1/products/{product_key}/identity", pathParams: ["product_key"], query: [], body: "application/json", security: ["admin", "developer"] },
});
