/**
 * The parameter service: model registry, block serving, admin API.
 * Not built yet (issue 4); the module exists so the fixed top level builds.
 */
package dev.strata.paramserver;
