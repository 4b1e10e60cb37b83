//! Odoo's first start: its database created (with the database manager off nobody could
//! later), and the admin account's password made secret.

use super::*;

impl Supervisor {
    /// Before Odoo's first start, its database must exist: with the database manager off
    /// (`list_db = False`) nobody could create it later. `odoo -i base,plantd_apply
    /// --stop-after-init` runs once, in a container made like Odoo's (the same image, config
    /// and filestore).
    pub(super) async fn ensure_odoo_database(
        &mut self,
        engine: &Engine,
        spec: &ServiceSpec,
    ) -> Result<(), Error> {
        let db = self.desired.odoo_database.clone();
        let ip = self
            .seen
            .get(&Service::Postgres)
            .and_then(|s| s.ip)
            .ok_or(Error::NoPostgresAddress)?;
        if probe::database_exists(ip, &self.desired.secrets, &db).await? {
            return Ok(());
        }
        self.event(
            Some(Service::Odoo),
            "init",
            format!("creating the Odoo database {db} (odoo -i base,plantd_apply, once)"),
        );
        let cmd = [
            "odoo",
            "-d",
            &db,
            "-i",
            // plantd_apply (on the addons path from DATA_DIR/stack/addons) lets the apply send
            // a batch in one call.
            "base,plantd_apply",
            "--without-demo",
            "all",
            "--stop-after-init",
        ]
        .map(String::from)
        .to_vec();
        engine
            .run_once(&self.desired, spec, cmd, Duration::from_secs(15 * 60))
            .await
            .map_err(|source| Error::CreateDatabase {
                database: db.clone(),
                source,
            })?;
        self.event(
            Some(Service::Odoo),
            "init_done",
            format!("database {db} is ready"),
        );
        Ok(())
    }

    /// Odoo creates its database with the login `admin`, password `admin`, reachable through
    /// the ingress. While that is still its password, plantd replaces it with the generated one
    /// in secrets.json (`plantd stack secret odoo-admin` prints it), writing the hash Odoo
    /// would write over its own connection to PostgreSQL. A password someone chose is left
    /// alone.
    pub(super) async fn secure_odoo_admin(&mut self) -> Result<(), Error> {
        let db = self.desired.odoo_database.clone();
        let ip = self
            .seen
            .get(&Service::Postgres)
            .and_then(|s| s.ip)
            .ok_or(Error::NoPostgresAddress)?;
        let secrets = self.desired.secrets.clone();
        let timeout = Duration::from_secs(10);
        let pg = probe::Pg::connect(ip, &secrets, &db, timeout).await?;
        let result: Result<Option<()>, Error> = async {
            let row = pg
                .client
                .query_opt(
                    "SELECT id, COALESCE(password, '') FROM res_users WHERE login = 'admin'",
                    &[],
                )
                .await
                .map_err(|source| Error::ReadAdminLogin {
                    database: db.clone(),
                    source,
                })?;
            let Some(row) = row else {
                return Ok(None);
            };
            let (id, stored): (i32, String) = (row.get(0), row.get(1));
            let login = secrets.odoo_admin_login_password.clone();
            let new_hash = tokio::task::spawn_blocking(move || {
                if odoo_password::verify("admin", &stored) {
                    odoo_password::hash(&login).map(Some)
                } else {
                    Ok(None)
                }
            })
            .await
            .map_err(Error::HashTask)?
            .map_err(Error::Hash)?;
            let Some(new_hash) = new_hash else {
                return Ok(None);
            };
            pg.client
                .execute(
                    "UPDATE res_users SET password = $1 WHERE id = $2",
                    &[&new_hash, &id],
                )
                .await
                .map_err(|source| Error::SetAdminPassword {
                    database: db.clone(),
                    source,
                })?;
            Ok(Some(()))
        }
        .await;
        pg.close().await;
        if result?.is_some() {
            self.event(
                Some(Service::Odoo),
                "admin_password",
                format!("the login admin of {db} had Odoo's default password; it now has the generated one (`plantd stack secret odoo-admin` prints it)"),
            );
        }
        Ok(())
    }
}
