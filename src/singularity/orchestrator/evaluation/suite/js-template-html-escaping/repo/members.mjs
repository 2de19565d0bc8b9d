import { render } from './template.mjs';

const ROW = '<li class="{{role}}">{{name}} {{{badge}}}</li>';

export function membersPage(members) {
  const rows = members.map((member) => render(ROW, member)).join('\n');
  return `<ul>\n${rows}\n</ul>`;
}
