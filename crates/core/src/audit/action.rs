//! Every audit action, by subject: the `action` column of the audit log and the label of
//! `rampart_audit_events_total`. Operators filter the log by these strings, so each is a
//! contract: add new ones here, never rename one.

pub const ACCESS_KEY_AUTH: &str = "access_key.auth";
pub const ACCESS_KEY_CREATE: &str = "access_key.create";
pub const ACCESS_KEY_DELETE: &str = "access_key.delete";
pub const ACCESS_KEY_DISABLE: &str = "access_key.disable";
pub const ACCESS_KEY_ENABLE: &str = "access_key.enable";
pub const ACCESS_KEY_ROTATE: &str = "access_key.rotate";

pub const ADMIN_TOKEN_CREATE: &str = "admin_token.create";
pub const ADMIN_TOKEN_RECOVER: &str = "admin_token.recover";
pub const ADMIN_TOKEN_REVOKE: &str = "admin_token.revoke";

pub const ALLOWLIST_ADD: &str = "allowlist.add";
pub const ALLOWLIST_UPLOAD: &str = "allowlist.upload";

pub const APP_CREATE: &str = "app.create";

pub const AT_REST_AUDIT_CHAIN_KEYED: &str = "at_rest.audit_chain_keyed";
pub const AT_REST_MARKER_MISSING: &str = "at_rest.marker_missing";
pub const AT_REST_SEALS_BOUND: &str = "at_rest.seals_bound";

pub const AUDIT_CHAIN_KEYED: &str = "audit.chain_keyed";
pub const AUDIT_READ: &str = "audit.read";

pub const DEVELOPER_ACTIVATE: &str = "developer.activate";
pub const DEVELOPER_CREATE: &str = "developer.create";
pub const DEVELOPER_DELETE: &str = "developer.delete";
pub const DEVELOPER_LOCKOUT: &str = "developer.lockout";
pub const DEVELOPER_LOGIN: &str = "developer.login";
pub const DEVELOPER_LOGOUT: &str = "developer.logout";
pub const DEVELOPER_PASSWORD_CHANGE: &str = "developer.password_change";
pub const DEVELOPER_PASSWORD_RESET: &str = "developer.password_reset";
pub const DEVELOPER_PASSWORD_RESET_REQUEST: &str = "developer.password_reset_request";
pub const DEVELOPER_REGISTER: &str = "developer.register";
pub const DEVELOPER_SECOND_FACTOR: &str = "developer.second_factor";
pub const DEVELOPER_SUSPEND: &str = "developer.suspend";
pub const DEVELOPER_TOKEN_REUSE: &str = "developer.token_reuse";
pub const DEVELOPER_TOTP_DISABLE: &str = "developer.totp_disable";
pub const DEVELOPER_TOTP_ENABLE: &str = "developer.totp_enable";
pub const DEVELOPER_TOTP_ENROL: &str = "developer.totp_enrol";
pub const DEVELOPER_UNSUSPEND: &str = "developer.unsuspend";

pub const DEVICE_ACCESS: &str = "device.access";
pub const DEVICE_BIND: &str = "device.bind";
pub const DEVICE_BIND_TOKEN: &str = "device.bind_token";
pub const DEVICE_COMMAND: &str = "device.command";
pub const DEVICE_CONNECT: &str = "device.connect";
/// A device connected with an RSA-1024 certificate its product allows.
pub const DEVICE_CONNECT_WEAK_KEY: &str = "device.connect_weak_key";
pub const DEVICE_DELETE: &str = "device.delete";
pub const DEVICE_DISABLE: &str = "device.disable";
pub const DEVICE_ENABLE: &str = "device.enable";
pub const DEVICE_PASSCODE_READ: &str = "device.passcode_read";
pub const DEVICE_RAW: &str = "device.raw";
pub const DEVICE_REGISTER: &str = "device.register";
pub const DEVICE_REPROVISION_OPEN: &str = "device.reprovision_open";
pub const DEVICE_SHARE: &str = "device.share";
pub const DEVICE_SHARE_ACCEPT: &str = "device.share_accept";
pub const DEVICE_SHARE_CLAIM: &str = "device.share_claim";
pub const DEVICE_SHARE_DECLINE: &str = "device.share_decline";
pub const DEVICE_SHARE_REVOKE: &str = "device.share_revoke";
pub const DEVICE_UNBIND: &str = "device.unbind";
pub const DEVICE_UNBIND_ALL: &str = "device.unbind_all";

pub const ENTERPRISE_ACCESS: &str = "enterprise.access";
pub const ENTERPRISE_CREATE: &str = "enterprise.create";
pub const ENTERPRISE_DELETE: &str = "enterprise.delete";
pub const ENTERPRISE_COMMAND_STATUS: &str = "enterprise.command_status";
pub const ENTERPRISE_DEVICE_ACCESS: &str = "enterprise.device_access";
pub const ENTERPRISE_DEVICE_HISTORY: &str = "enterprise.device_history";
pub const ENTERPRISE_DEVICE_LIST: &str = "enterprise.device_list";
pub const ENTERPRISE_DEVICE_READ: &str = "enterprise.device_read";
pub const ENTERPRISE_INVITE: &str = "enterprise.invite";
pub const ENTERPRISE_INVITE_DECLINE: &str = "enterprise.invite_decline";
pub const ENTERPRISE_MEMBER_ADD: &str = "enterprise.member_add";
pub const ENTERPRISE_MEMBER_LEAVE: &str = "enterprise.member_leave";
pub const ENTERPRISE_MEMBER_REMOVE: &str = "enterprise.member_remove";
pub const ENTERPRISE_ROLE_CHANGE: &str = "enterprise.role_change";
pub const ENTERPRISE_SUSPEND: &str = "enterprise.suspend";
pub const ENTERPRISE_UNSUSPEND: &str = "enterprise.unsuspend";

pub const EVENT_STREAM_LOGIN: &str = "event_stream.login";

pub const FACTORY_AUTH: &str = "factory.auth";
pub const FACTORY_BATCH_REVOKE: &str = "factory.batch_revoke";
pub const FACTORY_CREDENTIAL_CREATE: &str = "factory.credential_create";
pub const FACTORY_CREDENTIAL_REVOKE: &str = "factory.credential_revoke";
pub const FACTORY_ISSUE: &str = "factory.issue";

/// A third party read or controlled something through a user's grant (the actor names the client
/// and the user; the detail names the grant and the scope used).
pub const OAUTH_ACCESS: &str = "oauth.access";
pub const OAUTH_CLIENT_AUTH: &str = "oauth.client_auth";
pub const OAUTH_CLIENT_DELETE: &str = "oauth.client_delete";
pub const OAUTH_CLIENT_REGISTER: &str = "oauth.client_register";
pub const OAUTH_CLIENT_SECRET_ROTATE: &str = "oauth.client_secret_rotate";
pub const OAUTH_CLIENT_UPDATE: &str = "oauth.client_update";
pub const OAUTH_CODE_REUSE: &str = "oauth.code_reuse";
pub const OAUTH_GRANT: &str = "oauth.grant";
pub const OAUTH_GRANT_REVOKE: &str = "oauth.grant_revoke";
pub const OAUTH_REVOKE: &str = "oauth.revoke";
pub const OAUTH_TOKEN: &str = "oauth.token";
pub const OAUTH_TOKEN_REUSE: &str = "oauth.token_reuse";

pub const OTA_CAMPAIGN_ABORT: &str = "ota.campaign_abort";
pub const OTA_CAMPAIGN_CREATE: &str = "ota.campaign_create";
pub const OTA_CAMPAIGN_PAUSE: &str = "ota.campaign_pause";
pub const OTA_CAMPAIGN_RESUME: &str = "ota.campaign_resume";
/// A campaign paused itself (failures over its threshold).
pub const OTA_CAMPAIGN_SELF_PAUSE: &str = "ota.campaign_self_pause";
pub const OTA_FIRMWARE_DELETE: &str = "ota.firmware_delete";
pub const OTA_FIRMWARE_UPLOAD: &str = "ota.firmware_upload";
pub const OTA_KEY_CREATE: &str = "ota.key_create";

pub const PRODUCT_ACCESS: &str = "product.access";
pub const PRODUCT_CA_ADD: &str = "product.ca_add";
pub const PRODUCT_CA_DELETE: &str = "product.ca_delete";
pub const PRODUCT_CRL: &str = "product.crl";
pub const PRODUCT_CREATE: &str = "product.create";
pub const PRODUCT_DELETE: &str = "product.delete";
pub const PRODUCT_IDENTITY: &str = "product.identity";
pub const PRODUCT_SECRET_READ: &str = "product.secret_read";
pub const PRODUCT_SECRET_ROTATE: &str = "product.secret_rotate";

pub const USER_ACTIVATE: &str = "user.activate";
pub const USER_DELETE: &str = "user.delete";
pub const USER_EXPORT: &str = "user.export";
pub const USER_LOCKOUT: &str = "user.lockout";
pub const USER_LOGIN: &str = "user.login";
pub const USER_LOGOUT: &str = "user.logout";
pub const USER_LOGOUT_ALL: &str = "user.logout_all";
pub const USER_OIDC_LINK: &str = "user.oidc_link";
pub const USER_PASSWORD_CHANGE: &str = "user.password_change";
pub const USER_PASSWORD_RESET: &str = "user.password_reset";
pub const USER_PASSWORD_RESET_REQUEST: &str = "user.password_reset_request";
pub const USER_REGISTER: &str = "user.register";
pub const USER_TOKEN_REUSE: &str = "user.token_reuse";

pub const WEBHOOK_CREATE: &str = "webhook.create";
pub const WEBHOOK_DEAD_LETTERS_DELETE: &str = "webhook.dead_letters_delete";
pub const WEBHOOK_DELETE: &str = "webhook.delete";
pub const WEBHOOK_DISABLE: &str = "webhook.disable";
pub const WEBHOOK_ENABLE: &str = "webhook.enable";
pub const WEBHOOK_REDRIVE: &str = "webhook.redrive";
