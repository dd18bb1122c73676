"""The report's words, French first. Each key has both languages (a test checks it)."""

from __future__ import annotations

LANGUAGES = ("fr", "en")

STRINGS: dict[str, dict[str, str]] = {
    "title": {"fr": "Rapport de l'armoire {cabinet} — {commune}",
              "en": "Report of the {cabinet} cabinet — {commune}"},
    "period": {"fr": "Période du {start} au {end} (heure UTC)",
               "en": "Period from {start} to {end} (UTC)"},
    "all_well": {"fr": "Tout va bien : l'armoire a fonctionné normalement sur la période.",
                 "en": "All is well: the cabinet worked normally over the period."},
    "attention": {"fr": "À surveiller : {problems}. Contact : {contact}.",
                  "en": "Needs attention: {problems}. Contact: {contact}."},
    "no_samples": {"fr": "Aucune mesure enregistrée sur la période.",
                   "en": "No measurement recorded over the period."},
    "p_unreachable": {"fr": "l'armoire ne répond pas depuis la dernière mesure",
                      "en": "the cabinet has not answered since the last measurement"},
    "p_incidents": {"fr": "{n} incident(s) sur la période",
                    "en": "{n} incident(s) over the period"},
    "p_backup_old": {"fr": "la dernière copie de sécurité hors de la commune date de {age}",
                     "en": "the last backup copy outside the commune is {age} old"},
    "p_backup_unknown": {"fr": "l'état des copies de sécurité est inconnu",
                         "en": "the state of the backup copies is unknown"},
    "p_energy": {"fr": "la consommation dépasse le budget d'énergie",
                 "en": "the consumption is above the energy budget"},
    "h_capacity": {"fr": "Capacité", "en": "Capacity"},
    "h_energy": {"fr": "Électricité", "en": "Power and energy"},
    "h_storage": {"fr": "Stockage", "en": "Storage"},
    "h_tenants": {"fr": "Occupants et ce qu'ils utilisent", "en": "Tenants and what they use"},
    "h_backups": {"fr": "Copies de sécurité", "en": "Backups"},
    "h_mail": {"fr": "Boîtes aux lettres", "en": "Mailboxes"},
    "h_federation": {"fr": "Communes partenaires", "en": "Federation peers"},
    "h_incidents": {"fr": "Incidents et disponibilité", "en": "Incidents and uptime"},
    "h_glossary": {"fr": "Petit glossaire", "en": "Short glossary"},
    "h_usage": {"fr": "Relevé d'utilisation par client", "en": "Usage statement per client"},
    "capacity_line": {"fr": "{what} : {used} utilisés sur {capacity} ({pct} %)",
                      "en": "{what}: {used} used of {capacity} ({pct}%)"},
    "vcpu": {"fr": "Processeurs virtuels (vCPU)", "en": "Virtual processors (vCPU)"},
    "ram": {"fr": "Mémoire", "en": "Memory"},
    "disk": {"fr": "Espace disque", "en": "Disk space"},
    "energy_line": {"fr": "{kwh} kWh consommés sur la période, pour un budget de {budget} kWh "
                          "({watts} W en continu).",
                    "en": "{kwh} kWh used over the period, against a budget of {budget} kWh "
                          "({watts} W around the clock)."},
    "energy_estimated": {"fr": "Estimation d'après l'activité des serveurs (pas de mesure de "
                               "l'onduleur).",
                         "en": "Estimated from the servers' activity (no UPS measurement)."},
    "chart_power": {"fr": "Puissance moyenne par jour (W)", "en": "Mean power per day (W)"},
    "chart_storage": {"fr": "Stockage occupé par jour (Gio)", "en": "Storage used per day (GiB)"},
    "storage_line": {"fr": "{used} occupés sur {total}.", "en": "{used} used of {total}."},
    "t_tenant": {"fr": "Occupant", "en": "Tenant"},
    "t_machines": {"fr": "Machines (en marche)", "en": "Machines (running)"},
    "t_vcpu": {"fr": "vCPU réservés / quota", "en": "vCPU reserved / quota"},
    "t_ram": {"fr": "Mémoire réservée / quota", "en": "Memory reserved / quota"},
    "t_disk": {"fr": "Disque réservé / quota", "en": "Disk reserved / quota"},
    "backup_age": {"fr": "La dernière copie de sécurité hors de la commune date de {age}.",
                   "en": "The last backup copy outside the commune is {age} old."},
    "backup_none": {"fr": "Aucune copie de sécurité hors de la commune n'est prévue.",
                    "en": "No backup copy outside the commune is set up."},
    "backup_unknown": {"fr": "L'âge de la dernière copie hors de la commune est inconnu ({state}).",
                       "en": "The age of the last copy outside the commune is unknown ({state})."},
    "backup_peers": {"fr": "Copies envoyées à : {peers}.", "en": "Copies sent to: {peers}."},
    "mail_line": {"fr": "Domaines : {domains}. Jusqu'à {max} boîtes prévues.",
                  "en": "Domains: {domains}. Up to {max} mailboxes planned."},
    "mail_not_recorded": {"fr": "Nombre de boîtes ouvertes : non enregistré.",
                          "en": "Mailboxes open: not recorded."},
    "mail_open": {"fr": "{total} boîtes ouvertes : {per_domain}.",
                  "en": "{total} mailboxes open: {per_domain}."},
    "mail_domain": {"fr": "{count} pour {domain}", "en": "{count} for {domain}"},
    "mail_health": {"fr": "État de la messagerie au dernier relevé : {state}.",
                    "en": "Mail service at the last check: {state}."},
    "mail_ok": {"fr": "tout fonctionne", "en": "all is well"},
    "mail_attention": {"fr": "fonctionne, mais un point demande attention",
                       "en": "working, but something needs attention"},
    "mail_down": {"fr": "hors service", "en": "down"},
    "u_mail_cell": {"fr": "{count} (boîtes-jours : {days})",
                    "en": "{count} (mailbox-days: {days})"},
    "mail_none": {"fr": "Pas de messagerie sur cette armoire.",
                  "en": "No mail service on this cabinet."},
    "fed_line": {"fr": "Membre du groupement « {name} » ({role}).",
                 "en": "Member of the “{name}” federation ({role})."},
    "fed_none": {"fr": "Cette armoire n'appartient à aucun groupement.",
                 "en": "This cabinet belongs to no federation."},
    "uptime_line": {"fr": "Disponibilité : {pct} % du temps mesuré ({known} heures), hors "
                          "maintenance annoncée ({maintenance} heures).",
                    "en": "Uptime: {pct}% of the measured time ({known} hours), declared "
                          "maintenance left out ({maintenance} hours)."},
    "no_incident": {"fr": "Aucun incident sur la période.", "en": "No incident over the period."},
    "i_unreachable": {"fr": "Armoire injoignable", "en": "Cabinet unreachable"},
    "i_check": {"fr": "Vérification des copies en échec ({state})",
                "en": "Backup check failed ({state})"},
    "i_from_to": {"fr": "du {start} au {end}", "en": "from {start} to {end}"},
    "u_client": {"fr": "Client", "en": "Client"},
    "u_days": {"fr": "Jours mesurés", "en": "Days measured"},
    "u_vcpu": {"fr": "vCPU-jours réservés (utilisés)", "en": "vCPU-days reserved (used)"},
    "u_ram": {"fr": "Gio-jours de mémoire réservés (utilisés)",
              "en": "GiB-days of RAM reserved (used)"},
    "u_disk": {"fr": "Gio-jours de disque réservés (utilisés)",
               "en": "GiB-days of disk reserved (used)"},
    "u_mail": {"fr": "Boîtes aux lettres", "en": "Mailboxes"},
    "u_amount": {"fr": "Montant", "en": "Amount"},
    "not_recorded": {"fr": "non enregistré", "en": "not recorded"},
    "no_billing": {"fr": "Aucun tarif déclaré pour cette armoire (bloc billing).",
                   "en": "No price list declared for this cabinet (billing block)."},
    "billing_rule": {"fr": "Facturation sur le réservé ; chaque ligne arrondie au centime "
                           "(au plus proche, demi au-dessus).",
                     "en": "Billed on what is reserved; each line rounded to the cent "
                           "(nearest, half up)."},
    "generated": {"fr": "Rapport produit le {when} par kloudctl.",
                  "en": "Report made on {when} by kloudctl."},
    "glossary": {
        "fr": "vCPU|un processeur virtuel : une part de la puissance de calcul d'un serveur.\n"
              "Gio|gibioctet, environ un milliard d'octets (une photo pèse quelques Mio).\n"
              "kWh|kilowattheure, l'unité de la facture d'électricité.\n"
              "Occupant|une association, une entreprise ou la mairie qui loue une part "
              "de l'armoire.\n"
              "Copie de sécurité|une copie des données gardée dans une autre commune, "
              "pour les retrouver en cas de sinistre.",
        "en": "vCPU|a virtual processor: a share of a server's computing power.\n"
              "GiB|gibibyte, about a billion bytes (a photo is a few MiB).\n"
              "kWh|kilowatt-hour, the unit of the electricity bill.\n"
              "Tenant|an association, a business or the town hall renting part of the cabinet.\n"
              "Backup copy|a copy of the data kept in another commune, to get it back "
              "after a disaster.",
    },
    "f_title": {"fr": "Rapport de la flotte Kloud'Ici", "en": "Kloud'Ici fleet report"},
    "f_commune": {"fr": "Commune", "en": "Commune"},
    "f_health": {"fr": "État", "en": "Health"},
    "f_power": {"fr": "Puissance (W / budget)", "en": "Power (W / budget)"},
    "f_lag": {"fr": "Retard des copies", "en": "Backup lag"},
    "f_capacity": {"fr": "vCPU libres", "en": "vCPU left"},
    "f_energy": {"fr": "Énergie sur la période (kWh)", "en": "Energy over the period (kWh)"},
    "f_uptime": {"fr": "Disponibilité", "en": "Uptime"},
    "f_sort": {"fr": "Cliquer sur un en-tête pour trier.", "en": "Click a heading to sort."},
    "health_ok": {"fr": "bon", "en": "good"},
    "health_down": {"fr": "injoignable", "en": "unreachable"},
    "health_none": {"fr": "aucune mesure", "en": "no measurement"},
    "health_attention": {"fr": "à surveiller", "en": "needs attention"},
}  # fmt: skip


def words(lang: str) -> dict[str, str]:
    return {key: texts[lang] for key, texts in STRINGS.items()}


def duration(seconds: float, lang: str) -> str:
    """'2 heures', '3 jours', '5 minutes': plain words for an age."""
    units = (
        (86400, "jour", "jours", "day", "days"),
        (3600, "heure", "heures", "hour", "hours"),
        (60, "minute", "minutes", "minute", "minutes"),
    )
    for size, fr1, frn, en1, enn in units:
        if seconds >= size:
            n = int(seconds // size)
            one, many = (fr1, frn) if lang == "fr" else (en1, enn)
            return f"{n} {one if n == 1 else many}"
    return "moins d'une minute" if lang == "fr" else "less than a minute"
