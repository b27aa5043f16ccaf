-- foobar.com: database, tables and seed rows of the web application (hostapps/webapp).
-- Safe to run more than once: IF NOT EXISTS everywhere, seeds with fixed keys and INSERT IGNORE.
-- The MySQL account the app connects with is created by the runtime, not here.

CREATE DATABASE IF NOT EXISTS foobar CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE foobar;

CREATE TABLE IF NOT EXISTS items (
    id         INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name       VARCHAR(200) NOT NULL,
    created_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- password_hash = hex(PBKDF2-HMAC-SHA256(password, unhex(salt), iterations)), see passwords.py.
CREATE TABLE IF NOT EXISTS users (
    id            INT UNSIGNED NOT NULL AUTO_INCREMENT,
    username      VARCHAR(64)  NOT NULL,
    salt          CHAR(32)     NOT NULL,
    iterations    INT UNSIGNED NOT NULL,
    password_hash CHAR(64)     NOT NULL,
    created_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A session is stored by the SHA-256 of its cookie token, so reading this table does not log anyone in.
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 CHAR(64)     NOT NULL,
    user_id      INT UNSIGNED NOT NULL,
    created_at   DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    expires_at   DATETIME     NOT NULL,
    PRIMARY KEY (token_sha256),
    KEY user_id (user_id),
    CONSTRAINT sessions_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO items (id, name) VALUES
    (1, 'Welcome to foobar.com'),
    (2, 'Served from MariaDB'),
    (3, 'Edit me via POST /api/items');

-- alice / wonderland
INSERT IGNORE INTO users (id, username, salt, iterations, password_hash) VALUES
    (1, 'alice', '8d2e5cead3154da89283cad5a0b145ad', 100000,
     'abb732ab25d3ef26da7df94a7c54af99cb63c398622652c716ae2accdf85115b');
